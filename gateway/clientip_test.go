package gateway

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := trustedProxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name        string
		peer        string
		xff         []string
		want        string
		wantTrusted bool
	}{
		{"ok/untrusted-peer-ignores-xff", "203.0.113.7:5000", []string{"1.2.3.4"}, "203.0.113.7", false},
		{"ok/trusted-peer-no-xff", "10.0.0.1:5000", nil, "10.0.0.1", true},
		{"ok/trusted-peer-one-hop", "10.0.0.1:5000", []string{"198.51.100.9"}, "198.51.100.9", true},
		{"ok/rightmost-untrusted", "10.0.0.1:5000", []string{"6.6.6.6, 198.51.100.9, 10.1.1.1"}, "198.51.100.9", true},
		{"ok/fields-joined", "10.0.0.1:5000", []string{"6.6.6.6", "198.51.100.9", "10.2.2.2"}, "198.51.100.9", true},
		{"ok/all-trusted", "10.0.0.1:5000", []string{"10.3.3.3, 10.4.4.4"}, "10.3.3.3", true},
		{"ok/garbage-hop-stops", "10.0.0.1:5000", []string{"6.6.6.6, not-an-ip, 10.1.1.1"}, "10.1.1.1", true},
		{"ok/ipv6-peer", "[::1]:5000", []string{"2001:db8::7"}, "2001:db8::7", true},
		{"ok/v4-mapped", "[::ffff:10.0.0.1]:5000", []string{"198.51.100.9"}, "198.51.100.9", true},
		// Azure Application Gateway and IIS ARR write the client's port
		// too: read as garbage, every client would share the proxy's
		// budgets (anonymous and auth_failures alike).
		{"ok/hop-with-port", "10.0.0.1:5000", []string{"6.6.6.6, 198.51.100.9:4711"}, "198.51.100.9", true},
		{"ok/v6-hop-with-port", "10.0.0.1:5000", []string{"[2001:db8::7]:4711"}, "2001:db8::7", true},
		{"ok/v6-hop-in-brackets", "10.0.0.1:5000", []string{"[2001:db8::7]"}, "2001:db8::7", true},
		{"ok/trusted-hop-with-port", "10.0.0.1:5000", []string{"198.51.100.9, 10.1.1.1:443"}, "198.51.100.9", true},
		{"ok/v4-mapped-hop-with-port", "10.0.0.1:5000", []string{"[::ffff:198.51.100.9]:4711"}, "198.51.100.9", true},
		{"ok/bad-port-stops", "10.0.0.1:5000", []string{"6.6.6.6, 198.51.100.9:x, 10.1.1.1"}, "10.1.1.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, trustedPeer := trusted.clientIP(r)
			if got.String() != tc.want || trustedPeer != tc.wantTrusted {
				t.Fatalf("got %s (peer trusted %v), want %s (%v)", got, trustedPeer, tc.want, tc.wantTrusted)
			}
		})
	}
}

func TestLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.9":         "198.51.100.9",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
	} {
		if got := limitKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("limitKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestRouteMatch(t *testing.T) {
	table := newRouteTable([]*route{
		{name: "api", prefix: "/api"},
		{name: "api-v2", prefix: "/api/v2"},
		{name: "api-host", prefix: "/api", host: "tools.example.com"},
		{name: "api-host-port", prefix: "/api", host: "tools.example.com:8443"},
		{name: "post-only", prefix: "/api/write", methods: map[string]bool{"POST": true}},
		{name: "slash", prefix: "/files/"},
		{name: "root", prefix: "/"},
	})
	for _, tc := range []struct{ host, path, method, want string }{
		{"x.com", "/api", "GET", "api"},
		{"x.com", "/api/thing", "GET", "api"},
		{"x.com", "/api/v2/thing", "GET", "api-v2"},
		{"x.com", "/api/v20", "GET", "api"},
		{"TOOLS.example.com", "/api/x", "GET", "api-host"},
		{"tools.example.com:8080", "/api/x", "GET", "api-host"},
		{"tools.example.com:8443", "/api/x", "GET", "api-host-port"},
		{"tools.example.com.:8443", "/api/x", "GET", "api-host-port"},
		{"x.com", "/api/write", "POST", "post-only"},
		{"x.com", "/api/write", "GET", "api"},
		{"x.com", "/files/a", "GET", "slash"},
		{"x.com", "/files", "GET", "root"},
		{"x.com", "/apix", "GET", "root"},
	} {
		rt := table.match(tc.host, tc.path, tc.method)
		if rt == nil || rt.name != tc.want {
			t.Errorf("match(%s, %s, %s) = %v, want %s", tc.host, tc.path, tc.method, rt, tc.want)
		}
	}
	if rt := newRouteTable([]*route{{name: "api", prefix: "/api"}}).match("x", "/other", "GET"); rt != nil {
		t.Errorf("got %s for /other, want no route", rt.name)
	}
}

func TestHasDotSegment(t *testing.T) {
	for p, want := range map[string]bool{
		"/a/b": false, "/a/./b": true, "/a/../b": true, "/..": true, "/a/..b": false, "/.well-known/x": false, "/a/.": true,
	} {
		if got := hasDotSegment(p); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}
