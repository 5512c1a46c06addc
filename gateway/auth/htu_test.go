package auth

import (
	"net/url"
	"strings"
	"testing"
)

func TestNormalizeHTU(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"ok/identity", "https://api.example.com/a/b", "https://api.example.com/a/b"},
		{"ok/case-port-percent", "HTTPS://API.example.com:443/a/%7e", "https://api.example.com/a/~"},
		{"ok/http-default-port", "http://Example.COM:80/x", "http://example.com/x"},
		{"ok/other-port-kept", "https://example.com:8443/x", "https://example.com:8443/x"},
		{"ok/leading-zero-port", "https://example.com:0443/x", "https://example.com/x"},
		{"ok/empty-port", "https://example.com:/x", "https://example.com/x"},
		{"ok/empty-path", "https://example.com", "https://example.com/"},
		{"ok/query-fragment-dropped", "https://example.com/p?q=1#frag", "https://example.com/p"},
		{"ok/fragment-only", "https://example.com/p#a?b", "https://example.com/p"},
		{"ok/percent-upper", "https://example.com/a%2fb", "https://example.com/a%2Fb"},
		{"ok/percent-unreserved-decoded", "https://example.com/%41%2D%5F%2E", "https://example.com/A-_."},
		{"ok/dot-segments", "https://example.com/a/./b/../c", "https://example.com/a/c"},
		{"ok/dot-at-end", "https://example.com/a/b/..", "https://example.com/a/"},
		{"ok/dots-above-root", "https://example.com/../../a", "https://example.com/a"},
		{"ok/encoded-dot-segment", "https://example.com/a/%2E%2E/b", "https://example.com/b"},
		{"ok/trailing-slash-kept", "https://example.com/a/", "https://example.com/a/"},
		{"ok/double-slash-kept", "https://example.com//a", "https://example.com//a"},
		{"ok/ipv6", "https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"},
		{"ok/ipv6-port", "http://[::1]:8080/x", "http://[::1]:8080/x"},
		{"ok/ipv4", "http://127.0.0.1:8080", "http://127.0.0.1:8080/"},
		{"ok/raw-bytes-encoded", "https://example.com/a[0]|^/caf\u00e9", "https://example.com/a%5B0%5D%7C%5E/caf%C3%A9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeHTU(tc.in)
			if err != nil {
				t.Fatalf("NormalizeHTU(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("NormalizeHTU(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		{"fail/relative", "/a/b"},
		{"fail/no-scheme", "example.com/a"},
		{"fail/ftp", "ftp://example.com/a"},
		{"fail/userinfo", "https://user@example.com/a"},
		{"fail/empty-host", "https:///a"},
		{"fail/bad-percent", "https://example.com/%zz"},
		{"fail/short-percent", "https://example.com/%4"},
		{"fail/bad-port", "https://example.com:http/a"},
		{"fail/port-zero", "https://example.com:0/a"},
		{"fail/port-too-big", "https://example.com:65536/a"},
		{"fail/ipv6-unclosed", "https://[::1/a"},
		{"fail/ipv6-zone", "https://[fe80::1%25eth0]/a"},
		{"fail/ipv4-in-brackets", "https://[127.0.0.1]/a"},
		{"fail/space-in-host", "https://exa mple.com/a"},
		{"fail/backslash", "https://example.com\\@evil.com/a"},
		{"fail/too-long", "https://example.com/" + strings.Repeat("a", maxHTULen)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := NormalizeHTU(tc.in); err == nil {
				t.Fatalf("NormalizeHTU(%q) = %q, want an error", tc.in, got)
			}
		})
	}
}

// TestHTUCompare is the contract of §4.3 item 9 as the issue states it:
// variants of one URI match, other paths, hosts and ports do not.
func TestHTUCompare(t *testing.T) {
	const base = "https://api.example.com/a/~"
	for _, tc := range []struct {
		name  string
		other string
		match bool
	}{
		{"ok/spec-example", "HTTPS://API.example.com:443/a/%7e", true},
		{"ok/query", "https://api.example.com/a/~?x=1", true},
		{"ok/dot", "https://api.example.com/b/../a/~", true},
		{"fail/other-path", "https://api.example.com/a/b", false},
		{"fail/other-host", "https://evil.example.com/a/~", false},
		{"fail/other-port", "https://api.example.com:8443/a/~", false},
		{"fail/other-scheme", "http://api.example.com/a/~", false},
		{"fail/trailing-slash", "https://api.example.com/a/~/", false},
		{"fail/encoded-slash", "https://api.example.com/a%2F~", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := NormalizeHTU(base)
			err := checkHTU(tc.other, want)
			if tc.match && err != nil {
				t.Fatalf("got %v, want a match", err)
			}
			if !tc.match {
				wantCode(t, err, InvalidDPoPProof, ReasonHTUMismatch)
			}
		})
	}
}

func FuzzNormalizeHTU(f *testing.F) {
	for _, s := range []string{
		"HTTPS://API.example.com:443/a/%7e", "http://[::1]:80/../x?y#z", "https://a/%2e%2E/%7E",
		"https://example.com:/", "http://x:65535", "https://[fe80::1%25lo]/", "https://a@b/", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeHTU(s)
		if err != nil {
			return
		}
		// Normalising is idempotent, and the result is a URI without
		// query or fragment that the standard library reads back.
		again, err := NormalizeHTU(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeHTU(%q) = %q, then %q, %v", s, got, again, err)
		}
		u, err := url.Parse(got)
		if err != nil || u.RawQuery != "" || u.Fragment != "" || u.Host == "" {
			t.Fatalf("NormalizeHTU(%q) = %q: url.Parse says %+v, %v", s, got, u, err)
		}
	})
}
