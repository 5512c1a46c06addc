package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/replay/redistest"
)

// newRedisCapEnv is a gateway with both backends on srv, fail_closed, and
// rate_limits.anonymous_ip_cap set to capYAML, with routes added.
func newRedisCapEnv(t *testing.T, srv *redistest.Server, capYAML, routes string) *env {
	t.Helper()
	return newRedisCapEnvOnError(t, srv, capYAML, routes, "fail_closed")
}

// newRedisCapEnvOnError is newRedisCapEnv with rate_limits.on_error set to
// onError.
func newRedisCapEnvOnError(t *testing.T, srv *redistest.Server, capYAML, routes, onError string) *env {
	t.Helper()
	rateLimits := "  backend: redis\n  on_error: " + onError + "\n  auth_failures: {rate: 100/m}\n  anonymous_ip_cap: " + capYAML
	extra := routes + "server:\n  public_url: " + publicURL + "\nreplay:\n  backend: redis\nredis:\n" + oneServer(srv)
	return newEnvWith(t, rateLimits, extra)
}

// TestRedisIPCapOneRoundTrip: with anonymous_ip_cap, an anonymous request
// still costs one round trip to Redis, one script that decides on the
// route's bucket and the cap together.
func TestRedisIPCapOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	e := newRedisCapEnv(t, srv, "{rate: 100/m}", "")
	if res := e.do(e.req("GET", "/public/x")); res.status != 200 { // loads the script
		t.Fatalf("got %d %s, want 200", res.status, res.body)
	}
	h := &countingHook{}
	e.gw.redis.client.AddHook(h)
	for i := range 3 {
		if res := e.do(e.req("GET", "/public/x")); res.status != 200 {
			t.Fatalf("request %d: got %d %s, want 200", i, res.status, res.body)
		}
		single, pipelines := h.take()
		if got := fmt.Sprint(single); got != "[evalsha]" {
			t.Errorf("request %d: single commands: got %s, want [evalsha]", i, got)
		}
		if got := fmt.Sprint(pipelines); got != "[]" {
			t.Errorf("request %d: pipelines: got %s, want []", i, got)
		}
	}
}

// TestRedisIPCapRefusalTakesNothing: on Redis as in memory, a request the
// anonymous_ip_cap refuses takes nothing from the route's bucket, so a
// client that waits out the cap is served the route's whole budget.
func TestRedisIPCapRefusalTakesNothing(t *testing.T) {
	srv := redistest.Start(t)
	e := newRedisCapEnv(t, srv, "{rate: 1/s}", `  - name: slow
    path_prefix: /slow
    upstream: %[2]s
    auth: optional
    rate_limits: {anonymous: 2/h}
`)
	if res := e.do(e.req("GET", "/slow/x")); res.status != 200 {
		t.Fatalf("first request: got %d %s, want 200", res.status, res.body)
	}
	res := e.do(e.req("GET", "/slow/x"))
	if res.status != 429 || res.header.Get("RateLimit-Policy") != `"anonymous_ip_cap";q=1;w=1` {
		t.Fatalf("second request, at once: got %d, RateLimit-Policy %q, want 429 from the cap", res.status, res.header.Get("RateLimit-Policy"))
	}
	time.Sleep(1200 * time.Millisecond) // the cap's token is back
	res = e.do(e.req("GET", "/slow/x"))
	if res.status != 200 {
		t.Fatalf("after the cap refilled: got %d %s (RateLimit-Policy %q), want 200: the cap's refusal took the route's token",
			res.status, res.body, res.header.Get("RateLimit-Policy"))
	}
	if got := res.header.Get("X-RateLimit-Remaining"); got != "0" {
		t.Errorf("X-RateLimit-Remaining %s, want 0 (the route's second and last token, the cap's too)", got)
	}
}

// TestRedisIPCapFailureModes: with Redis down, a decision under the cap
// does what rate_limits.on_error says: 503 (fail_closed), served without
// rate-limit headers (fail_open), or this replica's own buckets, the cap
// looked at first as on Redis (local).
func TestRedisIPCapFailureModes(t *testing.T) {
	for _, tt := range []struct {
		onError  string
		statuses []int
		policy   string // of the last answer
	}{
		{"fail_closed", []int{503}, ""},
		{"fail_open", []int{200, 200, 200}, ""},
		// The cap (2/m) is tighter than the route's anonymous tier (5/m).
		{"local", []int{200, 200, 429}, `"anonymous_ip_cap";q=2;w=60`},
	} {
		t.Run(tt.onError, func(t *testing.T) {
			srv := redistest.Start(t)
			e := newRedisCapEnvOnError(t, srv, "{rate: 2/m}", "", tt.onError)
			srv.Stop()
			var res result
			for i, want := range tt.statuses {
				if res = e.do(e.req("GET", "/public/x")); res.status != want {
					t.Fatalf("request %d, Redis down: got %d %s, want %d", i, res.status, res.body, want)
				}
			}
			if got := res.header.Get("RateLimit-Policy"); got != tt.policy {
				t.Errorf("RateLimit-Policy: got %q, want %q", got, tt.policy)
			}
		})
	}
}
