package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// documented is the Config an empty file gives: every default of the
// Config types' doc comments and spec section 2.
func documented() Config {
	return Config{
		Server: Server{
			Listen:             ":8080",
			AdminListen:        "127.0.0.1:9090",
			ReadHeaderTimeout:  Duration(10 * time.Second),
			ReadTimeout:        Duration(60 * time.Second),
			IdleTimeout:        Duration(120 * time.Second),
			MaxHeaderBytes:     32768,
			MaxCredentialBytes: 8192,
			ShutdownGrace:      Duration(30 * time.Second),
		},
		Log: Log{Level: "info", Format: "json"},
		DPoP: DPoP{
			MaxAge:     Duration(60 * time.Second),
			ClockSkew:  Duration(5 * time.Second),
			Algorithms: []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"},
			Nonce:      Nonce{Lifetime: Duration(5 * time.Minute)},
		},
		Replay: Replay{Backend: "memory", OnError: "fail_closed", MaxEntries: 1000000},
		Redis:  Redis{Mode: "single", Prefix: "dpopgate:", Timeout: Duration(200 * time.Millisecond)},
		RateLimits: RateLimits{
			Backend:   "local",
			OnError:   "local",
			TierClaim: "tier",
			Tiers: map[string]Tier{
				"anonymous": {Rate: Rate{60, time.Minute}, Burst: 60},
				"client":    {Rate: Rate{600, time.Minute}, Burst: 600},
				"business":  {Rate: Rate{3000, time.Minute}, Burst: 3000},
			},
			AuthFailures: Tier{Rate: Rate{10, time.Minute}, Burst: 10},
			MaxKeys:      1000000,
		},
		ForwardAuth: ForwardAuth{Path: "/auth"},
	}
}

// plain is c without its source index, for comparing with a literal.
func plain(c *Config) Config {
	v := *c
	v.src = nil
	return v
}

func TestDefaults(t *testing.T) {
	for _, tt := range []struct{ name, in string }{
		{"ok/empty", ""},
		{"ok/comments", "# defaults only\n\n# nothing else\n"},
		{"ok/document-marker", "---\n"},
		{"ok/null", "~\n"},
		{"ok/empty-mapping", "{}\n"},
		{"ok/null-sections", "server:\nlog:\ndpop:\n  nonce:\nrate_limits:\n  tiers:\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tt.in), nil)
			if err != nil {
				t.Fatalf("Parse: got error %v, want none", err)
			}
			if got, want := plain(c), documented(); !reflect.DeepEqual(got, want) {
				t.Fatalf("got\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestDefaultsInLists(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`
issuers:
  - issuer: https://auth.example.com
    audiences: [api]
    introspection: {client_id: gw, client_secret: s}
rate_limits:
  tiers:
    business: {rate: 3000/m}
    client: {rate: 100/s}
  anonymous_ip_cap: {rate: 120/m}
routes:
  - name: a
    host: API.Example.COM
    path_prefix: /a
    upstream: http://up:1
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	iss := c.Issuers[0]
	if want := []string{"RS256", "ES256", "PS256", "EdDSA"}; !reflect.DeepEqual(iss.Algorithms, want) {
		t.Errorf("issuer algorithms: got %v, want %v", iss.Algorithms, want)
	}
	if !iss.TypRequired() || iss.RequireTyp == nil {
		t.Errorf("require_typ: got %v, want a pointer to true", iss.RequireTyp)
	}
	if iss.RefreshInterval != Duration(15*time.Minute) || iss.MinRefreshInterval != Duration(5*time.Second) {
		t.Errorf("refresh intervals: got %s and %s, want 15m and 5s", iss.RefreshInterval, iss.MinRefreshInterval)
	}
	in := iss.Introspection
	if in.CacheTTL != Duration(time.Minute) || in.NegativeCacheTTL != Duration(10*time.Second) || in.Timeout != Duration(5*time.Second) {
		t.Errorf("introspection: got cache_ttl %s, negative_cache_ttl %s, timeout %s, want 1m, 10s, 5s", in.CacheTTL, in.NegativeCacheTTL, in.Timeout)
	}
	tiers := map[string]Tier{
		"anonymous": {Rate{60, time.Minute}, 60},
		"client":    {Rate{100, time.Second}, 100},
		"business":  {Rate{3000, time.Minute}, 3000},
	}
	if !reflect.DeepEqual(c.RateLimits.Tiers, tiers) {
		t.Errorf("tiers: got %v, want %v", c.RateLimits.Tiers, tiers)
	}
	if got, want := *c.RateLimits.AnonymousIPCap, (Tier{Rate{120, time.Minute}, 120}); got != want {
		t.Errorf("anonymous_ip_cap: got %v, want %v", got, want)
	}
	r := c.Routes[0]
	if r.Host != "api.example.com" || r.Auth != "optional" || r.DPoP != "required" || r.Timeout != Duration(30*time.Second) {
		t.Errorf("route: got host %q auth %q dpop %q timeout %s, want api.example.com optional required 30s", r.Host, r.Auth, r.DPoP, r.Timeout)
	}
}

func TestEnv(t *testing.T) {
	file := "server:\n  listen: \":1111\"\nlog:\n  level: warn\n"
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		check   func(*Config) string // "" when c is as expected
		wantErr string
	}{
		{"ok/file-without-env", file, nil, func(c *Config) string {
			return expect(c.Server.Listen, ":1111") + expect(c.Log.Level, "warn")
		}, ""},
		{"ok/env-overrides-file", file, map[string]string{"DPOPGATE_LISTEN": ":2222", "DPOPGATE_LOG_LEVEL": "ERROR"}, func(c *Config) string {
			return expect(c.Server.Listen, ":2222") + expect(c.Log.Level, "error")
		}, ""},
		{"ok/empty-variable-is-unset", file, map[string]string{"DPOPGATE_LISTEN": ""}, func(c *Config) string {
			return expect(c.Server.Listen, ":1111")
		}, ""},
		{"ok/every-variable", "", map[string]string{
			"DPOPGATE_LISTEN":            ":3333",
			"DPOPGATE_ADMIN_LISTEN":      "off",
			"DPOPGATE_REDIS_URL":         "redis://redis:6379/0",
			"DPOPGATE_REDIS_PASSWORD":    "pw",
			"DPOPGATE_LOG_LEVEL":         "debug",
			"DPOPGATE_DPOP_NONCE_SECRET": strings.Repeat("k", 32),
		}, func(c *Config) string {
			return expect(c.Server.Listen, ":3333") + expect(c.Server.AdminListen, "off") +
				expect(c.Redis.URL, "redis://redis:6379/0") + expect(c.Redis.Password, "pw") +
				expect(c.Log.Level, "debug") + expect(c.DPoP.Nonce.Secret, strings.Repeat("k", 32))
		}, ""},
		{"ok/sentinel-password", "redis: {addrs: [\"s:26379\"], mode: sentinel, master_name: m}\n",
			map[string]string{"DPOPGATE_REDIS_PASSWORD": "pw", "DPOPGATE_REDIS_SENTINEL_PASSWORD": "spw"}, func(c *Config) string {
				return expect(c.Redis.Password, "pw") + expect(c.Redis.SentinelPassword, "spw")
			}, ""},
		{"fail/sentinel-password-without-sentinel", "", map[string]string{"DPOPGATE_REDIS_SENTINEL_PASSWORD": "spw"}, nil,
			`t.yaml: redis.sentinel_password: is only used with redis.mode sentinel (from DPOPGATE_REDIS_SENTINEL_PASSWORD)`},
		{"ok/other-variables-ignored", "", map[string]string{"DPOPGATE_CONFIG": "x.yaml", "DPOPGATE_SERVER_LISTEN": ":9", "LISTEN": ":9"}, func(c *Config) string {
			return expect(c.Server.Listen, ":8080")
		}, ""},
		{"ok/env-satisfies-required", "dpop:\n  nonce: {enabled: true}\nreplay:\n  backend: redis\n",
			map[string]string{"DPOPGATE_DPOP_NONCE_SECRET": strings.Repeat("s", 40), "DPOPGATE_REDIS_URL": "rediss://r:6380"}, func(c *Config) string {
				return expect(c.Redis.URL, "rediss://r:6380")
			}, ""},
		{"ok/client-secret-env", "issuers:\n  - issuer: https://a.example.com\n    audiences: [x]\n    introspection: {client_id: gw, client_secret_env: MY_SECRET}\n",
			map[string]string{"MY_SECRET": "from-env"}, func(c *Config) string {
				return expect(c.Issuers[0].Introspection.ClientSecret, "from-env")
			}, ""},
		{"fail/bad-value-names-the-variable", file, map[string]string{"DPOPGATE_LISTEN": "nope"}, nil,
			`t.yaml: server.listen: "nope" is not host:port, such as ":8080" or "127.0.0.1:8080" (from DPOPGATE_LISTEN)`},
		{"fail/secret-too-short", "dpop:\n  nonce:\n    enabled: true\n", map[string]string{"DPOPGATE_DPOP_NONCE_SECRET": "short"}, nil,
			`t.yaml: dpop.nonce.secret: must be at least 32 bytes, got 5 (from DPOPGATE_DPOP_NONCE_SECRET)`},
		{"fail/redis-url", "", map[string]string{"DPOPGATE_REDIS_URL": "http://:pw@r:1"}, nil,
			`t.yaml: redis.url: "http://:xxxxx@r:1" must start with redis:// or rediss:// (from DPOPGATE_REDIS_URL)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tt.file), func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if msg := tt.check(c); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func expect(got, want string) string {
	if got != want {
		return "got " + got + ", want " + want + "; "
	}
	return ""
}

// TestEnvNotFromProcess checks that Parse reads the environment only
// through getenv.
func TestEnvNotFromProcess(t *testing.T) {
	t.Setenv("DPOPGATE_LISTEN", ":7777")
	c, err := Parse("t.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != ":8080" {
		t.Fatalf("listen: got %q, want the default :8080", c.Server.Listen)
	}
}

// TestValidateDoesNotMutate validates parsed and hand-built configs, good
// and bad, and compares each with an identical copy made beforehand.
func TestValidateDoesNotMutate(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "valid", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	parsed := func() *Config {
		c, err := Parse("full.yaml", data, goldenEnv)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broken := func() *Config {
		c := parsed()
		c.Routes[0].Host = "UPPER.example.com"
		c.Routes[0].Methods = []string{"get"}
		c.Log.Level = "LOUD"
		c.Server.PublicURL = "https://x.example.com/"
		c.RateLimits.Tiers["x"] = Tier{}
		c.Issuers[0].RequireTyp = nil
		return c
	}
	built := func() *Config {
		return &Config{Routes: []Route{{Name: "A", Host: "Mixed.Case"}}, Issuers: []Issuer{{Issuer: "https://a"}}}
	}
	for _, tt := range []struct {
		name    string
		make    func() *Config
		wantErr bool
	}{
		{"ok/parsed", parsed, false},
		{"fail/parsed-then-broken", broken, true},
		{"fail/built-in-go", built, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, before := tt.make(), tt.make()
			if err := c.Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate: got %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(c, before) {
				t.Fatalf("Validate changed the config:\ngot  %+v\nwant %+v", c, before)
			}
		})
	}
}

func TestValidateBuiltInGo(t *testing.T) {
	c := documented()
	c.Routes = []Route{{Name: "a", PathPrefix: "/a", Upstream: "http://up:1", Auth: "none", DPoP: "required", Timeout: Duration(time.Second)}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: got %v, want none", err)
	}
	c.Routes[0].Upstream = "up:1"
	c.Log.Level = ""
	err := c.Validate()
	want := "log.level: \"\" is not one of debug, info, warn, error\n" +
		`routes[0].upstream: "up:1" is not an absolute http or https URL`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate: got\n%v\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Path != "log.level" || e.File != "" || e.Line != 0 {
		t.Fatalf("errors.As: got %+v, want the log.level *Error without file or line", e)
	}
}

// TestValidateAfterParse checks that a parsed Config keeps its lines for
// a later Validate.
func TestValidateAfterParse(t *testing.T) {
	c, err := Parse("gateway.yaml", []byte("routes:\n  - name: a\n    path_prefix: /a\n    upstream: http://up:1\n    auth: none\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Routes[0].Upstream = "ftp://x"
	c.Routes[0].Timeout = 0
	// Sorted by line; timeout is not in the file, so it has its route's line.
	want := "gateway.yaml:2: routes[0].timeout: must be positive, got 0s\n" +
		"gateway.yaml:4: routes[0].upstream: \"ftp://x\" is not an absolute http or https URL"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate: got\n%v\nwant\n%s", err, want)
	}
}

func TestParseErrorsUnwrap(t *testing.T) {
	_, err := Parse("g.yaml", []byte("server:\n  lisen: x\nlog:\n  level: loud\n"), nil)
	var list []error
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		list = u.Unwrap()
	}
	if len(list) != 2 {
		t.Fatalf("Unwrap: got %d errors (%v), want 2", len(list), err)
	}
	want := []Error{
		{File: "g.yaml", Line: 2, Path: "server.lisen", Message: "unknown key"},
		{File: "g.yaml", Line: 4, Path: "log.level", Message: `"loud" is not one of debug, info, warn, error`},
	}
	for i, e := range list {
		got, ok := e.(*Error)
		if !ok || *got != want[i] {
			t.Errorf("error %d: got %#v, want %#v", i, e, want[i])
		}
	}
}

func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		name string
		e    Error
		want string
	}{
		{"ok/everything", Error{"g.yaml", 3, "server.listen", "bad"}, "g.yaml:3: server.listen: bad"},
		{"ok/no-line", Error{"g.yaml", 0, "redis.url", "is required"}, "g.yaml: redis.url: is required"},
		{"ok/no-path", Error{"g.yaml", 7, "", "did not find expected key"}, "g.yaml:7: did not find expected key"},
		{"ok/no-file", Error{"", 0, "log.level", "bad"}, "log.level: bad"},
		{"ok/line-without-file", Error{"", 2, "log", "bad"}, "line 2: log: bad"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.Error(); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte("server:\n  listen: \":9999\"\n  lisen: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if want := path + ":3: server.lisen: unknown key"; err == nil || err.Error() != want {
		t.Fatalf("Load: got %v, want %s", err, want)
	}
	if err := os.WriteFile(path, []byte("server:\n  listen: \":9999\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil || c.Server.Listen != ":9999" {
		t.Fatalf("Load: got %v, %v, want listen :9999", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing): got %v, want fs.ErrNotExist", err)
	}
}

// TestEnvTouchesOnlyItsKeys checks that applying overrides (caarlos0/env
// walks the whole Config) changes nothing but the overridden keys.
func TestEnvTouchesOnlyItsKeys(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "valid", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DPOPGATE_LISTEN": ":1234", "DPOPGATE_REDIS_PASSWORD": "other", "INTROSPECT_SECRET": "s3cr3t-from-env"}
	got, err := Parse("full.yaml", data, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse("full.yaml", data, goldenEnv)
	if err != nil {
		t.Fatal(err)
	}
	want.Server.Listen, want.Redis.Password = ":1234", "other"
	if g, w := plain(got), plain(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("got\n%+v\nwant\n%+v", g, w)
	}
}
