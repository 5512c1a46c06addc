package gateway

import (
	"net/http"
	"testing"
	"time"
)

// TestLimitHeadersOnRefusals: spec §4, "Every answer on a limited route,
// upstream answers and 429s alike, carries X-RateLimit-Limit,
// X-RateLimit-Remaining, X-RateLimit-Reset, and the IETF RateLimit-Policy /
// RateLimit fields". A request refused before the rate-limit step shows
// the bucket it would draw on, without taking from it; the 429 of an
// address over its auth_failures budget shows that budget.
func TestLimitHeadersOnRefusals(t *testing.T) {
	e := newEnvWith(t, "  auth_failures: {rate: 1/m}", "")
	expired := e.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	for _, tc := range []struct {
		name      string
		req       func() *http.Request
		status    int
		policy    string // RateLimit-Policy
		remaining string
	}{
		{"403-insufficient-scope", func() *http.Request {
			return e.dpop(e.req("GET", "/tools/x"), e.iss.BoundToken(t, e.key, "agent-1", "listings:read", nil))
		}, 403, `"client";q=50;w=60`, "50"},
		{"401-no-token", func() *http.Request { return e.req("GET", "/tools/x") }, 401, `"anonymous";q=5;w=60`, "5"},
		{"401-no-token-again", func() *http.Request { return e.req("GET", "/tools/x") }, 401, `"anonymous";q=5;w=60`, "5"},
		{"401-expired-token", func() *http.Request { return e.dpop(e.req("GET", "/tools/x"), expired) }, 401, `"anonymous";q=5;w=60`, "5"},
		// The expired token used up the address's budget of one failure.
		{"429-auth-failures", func() *http.Request { return e.dpop(e.req("GET", "/tools/x"), expired) }, 429, `"auth_failures";q=1;w=60`, "0"},
		{"200-public", func() *http.Request { return e.req("GET", "/public/x") }, 200, `"anonymous";q=5;w=60`, "4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(tc.req())
			if res.status != tc.status {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tc.status)
			}
			var missing []string
			for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit"} {
				if res.header.Get(h) == "" {
					missing = append(missing, h)
				}
			}
			if len(missing) > 0 {
				t.Fatalf("%d %s on a limited route: missing %v", res.status, res.err.Error, missing)
			}
			if got := res.header.Get("RateLimit-Policy"); got != tc.policy {
				t.Errorf("RateLimit-Policy %q, want %q", got, tc.policy)
			}
			if got := res.header.Get("X-RateLimit-Remaining"); got != tc.remaining {
				t.Errorf("X-RateLimit-Remaining %s, want %s", got, tc.remaining)
			}
		})
	}
}

// TestLimitHeadersUnderIPCap: with anonymous_ip_cap, the rate-limit headers
// of an anonymous answer show whichever budget, the route's or the per-IP
// cap, has fewer requests left, so that X-RateLimit-Remaining never
// promises a request the cap will refuse.
func TestLimitHeadersUnderIPCap(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cap       string
		status    []int
		policy    []string
		remaining []string
	}{
		{"ok/cap-tighter", "3/m",
			[]int{200, 200, 200, 429},
			[]string{`"anonymous_ip_cap";q=3;w=60`, `"anonymous_ip_cap";q=3;w=60`, `"anonymous_ip_cap";q=3;w=60`, `"anonymous_ip_cap";q=3;w=60`},
			[]string{"2", "1", "0", "0"}},
		{"ok/route-tighter", "7/m",
			[]int{200, 200},
			[]string{`"anonymous";q=5;w=60`, `"anonymous";q=5;w=60`},
			[]string{"4", "3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, "  anonymous_ip_cap: {rate: "+tc.cap+"}", "")
			for i := range tc.status {
				res := e.do(e.req("GET", "/public/x"))
				if res.status != tc.status[i] {
					t.Fatalf("request %d: got %d %s, want %d", i, res.status, res.body, tc.status[i])
				}
				if got := res.header.Get("RateLimit-Policy"); got != tc.policy[i] {
					t.Errorf("request %d: RateLimit-Policy %q, want %q", i, got, tc.policy[i])
				}
				if got := res.header.Get("X-RateLimit-Remaining"); got != tc.remaining[i] {
					t.Errorf("request %d: X-RateLimit-Remaining %s, want %s", i, got, tc.remaining[i])
				}
			}
		})
	}
}
