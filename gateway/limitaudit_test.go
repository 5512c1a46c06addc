package gateway

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestLimitResetRoundsUp: X-RateLimit-Reset is the Unix second when the
// bucket is full again, rounded up, so that a client waiting until then
// finds it full, whatever fraction of a second the request came at.
func TestLimitResetRoundsUp(t *testing.T) {
	for _, frac := range []time.Duration{0, time.Nanosecond, 100 * time.Millisecond, 900 * time.Millisecond, time.Second - time.Nanosecond} {
		t.Run("ok/at-"+frac.String(), func(t *testing.T) {
			e := newEnv(t, "")
			now := e.clock.Now()
			e.clock.Advance(time.Second - time.Duration(now.Nanosecond()) + frac)
			now = e.clock.Now()
			res := e.do(e.req("GET", "/public/x"))
			full := now.Add(12 * time.Second) // 5/m: one token back in 12s
			reset, err := strconv.ParseInt(res.header.Get("X-RateLimit-Reset"), 10, 64)
			if err != nil {
				t.Fatalf("X-RateLimit-Reset %q: %v", res.header.Get("X-RateLimit-Reset"), err)
			}
			if time.Unix(reset, 0).Before(full) {
				t.Errorf("X-RateLimit-Reset %d is before the bucket is full, at %d.%09d", reset, full.Unix(), full.Nanosecond())
			}
			if time.Unix(reset, 0).Sub(full) >= time.Second {
				t.Errorf("X-RateLimit-Reset %d is a second or more after the bucket is full, at %d.%09d", reset, full.Unix(), full.Nanosecond())
			}
			if got := res.header.Get("RateLimit"); got != `"anonymous";r=4;t=12` {
				t.Errorf("RateLimit %q, want %q", got, `"anonymous";r=4;t=12`)
			}
		})
	}
}

// TestIPCapRefusalTakesNothing: a request the anonymous_ip_cap refuses
// takes nothing from the route's bucket (a denied call takes nothing), so
// a client that waits the Retry-After of the cap's 429 is served, and is
// served the route's whole budget.
func TestIPCapRefusalTakesNothing(t *testing.T) {
	e := newEnvWith(t, "  auth_failures: {rate: 100/m}\n  anonymous_ip_cap: {rate: 2/m}", `
  - name: slow
    path_prefix: /slow
    upstream: %[2]s
    auth: optional
    rate_limits: {anonymous: 3/h}
`)
	for i := 0; i < 2; i++ {
		if res := e.do(e.req("GET", "/slow/x")); res.status != 200 {
			t.Fatalf("request %d: got %d %s, want 200", i, res.status, res.body)
		}
	}
	res := e.do(e.req("GET", "/slow/x"))
	retry, err := strconv.Atoi(res.header.Get("Retry-After"))
	if res.status != 429 || err != nil || retry < 1 {
		t.Fatalf("over the cap: got %d, Retry-After %q, want 429 with Retry-After", res.status, res.header.Get("Retry-After"))
	}
	e.clock.Advance(time.Duration(retry) * time.Second)
	res = e.do(e.req("GET", "/slow/x"))
	if res.status != 200 {
		t.Fatalf("after waiting Retry-After %ds: got %d %s (RateLimit %q, Retry-After %q), want 200: the cap's refusals took the route's budget",
			retry, res.status, res.body, res.header.Get("RateLimit"), res.header.Get("Retry-After"))
	}
}

// TestIPCapOnRefusals: a refusal (400, 401) that shows the anonymous
// bucket shows the anonymous_ip_cap's instead when the cap has fewer
// requests left, as a served anonymous answer does, so that
// X-RateLimit-Remaining never promises a request the cap refuses.
func TestIPCapOnRefusals(t *testing.T) {
	e := newEnvWith(t, "  auth_failures: {rate: 100/m}\n  anonymous_ip_cap: {rate: 2/m}", "")
	for i := 0; i < 2; i++ {
		if res := e.do(e.req("GET", "/strip/x")); res.status != 200 {
			t.Fatalf("request %d: got %d, want 200", i, res.status)
		}
	}
	for _, tc := range []struct {
		name   string
		r      *http.Request
		status int
	}{
		{"400-token-in-query", e.req("GET", "/public/x?access_token=x"), 400},
		{"401-bad-token", e.req("GET", "/public/x", "Authorization", "Bearer x.y.z"), 401},
		{"401-no-token", e.req("GET", "/tools/x"), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(tc.r)
			if res.status != tc.status {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tc.status)
			}
			if got := res.header.Get("X-RateLimit-Remaining"); got != "0" {
				t.Errorf("X-RateLimit-Remaining %s (RateLimit-Policy %q), want 0: the cap has nothing left", got, res.header.Get("RateLimit-Policy"))
			}
			if got := res.header.Get("RateLimit-Policy"); got != `"anonymous_ip_cap";q=2;w=60` {
				t.Errorf("RateLimit-Policy %q, want the cap's", got)
			}
		})
	}
	if res := e.do(e.req("GET", "/public/x")); res.status != 429 {
		t.Fatalf("anonymous request: got %d, want 429 from the cap", res.status)
	}
}
