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
	rateLimits := "  backend: redis\n  on_error: fail_closed\n  auth_failures: {rate: 100/m}\n  anonymous_ip_cap: " + capYAML
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
