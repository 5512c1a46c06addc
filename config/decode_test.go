package config

import (
	"strings"
	"testing"
)

// decodeProblems runs the first step of Parse alone: read and strictly
// decode, no env, defaults or validation.
func decodeProblems(t *testing.T, data string) (*Config, []string) {
	t.Helper()
	c := &Config{src: newSource("t.yaml")}
	root, err := readDocument("t.yaml", []byte(data))
	if err != nil {
		return c, []string{err.Error()}
	}
	var got []string
	for _, e := range decode(c, root) {
		got = append(got, e.Error())
	}
	return c, got
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"ok/empty", "", nil},
		{"ok/comments", "# nothing\n", nil},
		{"ok/null-document", "~\n", nil},
		{"ok/null-values", "server:\nlog: ~\nroutes:\n", nil},
		{"fail/unknown-top", "serve: {}\n", []string{"t.yaml:1: serve: unknown key"}},
		{"fail/unknown-nested", "server:\n  tls:\n    cert: x\n", []string{"t.yaml:3: server.tls.cert: unknown key"}},
		{"fail/unknown-in-item", "routes:\n  - name: a\n  - nme: b\n", []string{"t.yaml:3: routes[1].nme: unknown key"}},
		{"fail/unknown-in-map-value", "rate_limits:\n  tiers:\n    x: {rat: 1/s}\n", []string{"t.yaml:3: rate_limits.tiers.x.rat: unknown key"}},
		{"fail/quoted-odd-key", "rate_limits:\n  tiers:\n    \"a b\": {rat: 1/s}\n", []string{`t.yaml:3: rate_limits.tiers["a b"].rat: unknown key`}},
		{"fail/list-for-string", "server:\n  listen: [a]\n", []string{"t.yaml:2: server.listen: expected a string, got a list"}},
		{"fail/string-for-list", "issuers: x\n", []string{`t.yaml:1: issuers: expected a list, got "x"`}},
		{"fail/list-for-struct", "server: [a]\n", []string{"t.yaml:1: server: expected a mapping, got a list"}},
		{"fail/string-for-map", "rate_limits:\n  tiers: gold\n", []string{`t.yaml:2: rate_limits.tiers: expected a mapping of names, got "gold"`}},
		{"fail/float-for-int", "server:\n  max_header_bytes: 1.5\n", []string{`t.yaml:2: server.max_header_bytes: expected a whole number, got "1.5"`}},
		{"fail/quoted-int", "server:\n  max_header_bytes: \"4096\"\n", []string{`t.yaml:2: server.max_header_bytes: expected a whole number, got "4096"`}},
		{"fail/int-overflow", "redis:\n  db: 99999999999999999999\n", []string{`t.yaml:2: redis.db: expected a whole number, got "99999999999999999999"`}},
		{"fail/bool", "forward_auth:\n  enabled: maybe\n", []string{`t.yaml:2: forward_auth.enabled: expected true or false, got "maybe"`}},
		{"fail/duration", "dpop:\n  max_age: 1 minute\n", []string{`t.yaml:2: dpop.max_age: "1 minute" is not a duration (use 15m, 30s, 1h)`}},
		{"fail/rate", "rate_limits:\n  auth_failures: {rate: 10/x}\n", []string{`t.yaml:2: rate_limits.auth_failures.rate: "10/x" is not a rate: unknown unit "x" (use 600/m, 10/s, 5000/h)`}},
		{"fail/prefix", "server:\n  trusted_proxies: [10.0.0.0/8, nope]\n", []string{`t.yaml:2: server.trusted_proxies[1]: "nope" is not an IP address or CIDR`}},
		{"fail/duplicate-key", "log:\n  level: info\n  level: debug\n", []string{"t.yaml:3: log.level: duplicate key; first written on line 2"}},
		{"fail/non-scalar-key", "log:\n  ? [a]\n  : b\n", []string{`t.yaml:2: log: a key must be a plain name, got a list`}},
		{"fail/merge-scalar", "log:\n  <<: x\n", []string{`t.yaml:2: log: a merge key (<<) takes a mapping or a list of mappings, got "x"`}},
		{"fail/merge-cycle", "log: &l\n  <<: *l\n", []string{"t.yaml:2: log: alias *l contains itself"}},
		{"fail/several-in-order", "server:\n  lisen: x\nlog:\n  levl: y\n", []string{"t.yaml:2: server.lisen: unknown key", "t.yaml:4: log.levl: unknown key"}},
		{"fail/not-a-mapping", "just text\n", []string{`t.yaml:1: expected a mapping, got "just text"`}},

		// Syntax errors: yaml.v3 prints some lines 0-based, or not at all.
		{"fail/syntax-line-1", "a: b: c\n", []string{"t.yaml:1: mapping values are not allowed in this context"}},
		{"fail/syntax-line-3", "x: 1\ny: 2\na: b: c\n", []string{"t.yaml:3: mapping values are not allowed in this context"}},
		{"fail/syntax-unclosed-flow", "x: 1\ny: [1,\nz: 3\n", []string{"t.yaml:2: did not find expected ',' or ']'"}},
		{"fail/syntax-expected-key", "x: 1\ny: 2\n- z\n", []string{"t.yaml:3: did not find expected key"}},
		{"fail/syntax-tab", "x: 1\ny:\n\t z: 1\n", []string{"t.yaml:3: found character that cannot start any token"}},
		{"fail/syntax-unterminated", "x: 1\ny: \"abc\n", []string{"t.yaml:2: found unexpected end of stream"}},
		{"fail/syntax-bad-escape-line-1", "x: \"\\xZZ\"\n", []string{"t.yaml:1: did not find expected hexdecimal number"}},
		{"fail/unknown-anchor", "x: 1\ny: *nope\n", []string{"t.yaml:2: alias *nope names no anchor (&nope) above it"}},
		{"fail/second-document", "log: {}\n---\nlog: {}\n", []string{"t.yaml:2: a second YAML document; a config is one document"}},
		{"fail/control-character", "log:\n  level: \"a\x01\"\n", []string{"t.yaml:2: control character U+0001 is not allowed"}},
		{"fail/invalid-utf8", "log:\n  level: \xc3\x28\n", []string{"t.yaml:2: invalid UTF-8; a config must be UTF-8 text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := decodeProblems(t, tt.in)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestDecodeKeepsTheRest checks that a bad value is left out and the rest
// of the file is still decoded, with its lines indexed.
func TestDecodeKeepsTheRest(t *testing.T) {
	c, got := decodeProblems(t, "server:\n  listen: [x]\n  admin_listen: \"off\"\nroutes:\n  - 7\n  - name: b\n")
	if len(got) != 2 {
		t.Fatalf("got %d problems %q, want 2", len(got), got)
	}
	if c.Server.AdminListen != "off" {
		t.Errorf("admin_listen: got %q, want %q", c.Server.AdminListen, "off")
	}
	if len(c.Routes) != 2 || c.Routes[1].Name != "b" {
		t.Errorf("routes: got %+v, want two, the second named b", c.Routes)
	}
	for path, want := range map[string]int{"server": 1, "server.admin_listen": 3, "routes[1]": 6, "routes[1].name": 6} {
		if got := c.src.keys[path].line; got != want {
			t.Errorf("line of %s: got %d, want %d", path, got, want)
		}
	}
	if c.src.has("server.listen") {
		t.Errorf("has(server.listen): got true for an undecodable value, want false")
	}
}

// TestDecodeNullItems checks that null and bad list items keep their
// place, so later items keep their index.
func TestDecodeNullItems(t *testing.T) {
	c, got := decodeProblems(t, "issuers:\n  - ~\n  - issuer: b\n    audiences: [~, x]\nserver:\n  trusted_proxies: [bad, ~, 10.0.0.1]\n")
	if len(got) != 1 {
		t.Fatalf("got problems %q, want one", got)
	}
	if len(c.Issuers) != 2 || c.Issuers[1].Issuer != "b" {
		t.Fatalf("issuers: got %+v, want two, the second b", c.Issuers)
	}
	if a := c.Issuers[1].Audiences; len(a) != 2 || a[0] != "" || a[1] != "x" {
		t.Errorf("audiences: got %q, want [\"\" x]", a)
	}
	if p := c.Server.TrustedProxies; len(p) != 3 || p[0].IsValid() || p[1].IsValid() || p[2].String() != "10.0.0.1/32" {
		t.Errorf("trusted_proxies: got %v, want [zero zero 10.0.0.1/32]", p)
	}
}
