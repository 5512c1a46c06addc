package gateway

import (
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/replay/redistest"
)

// TestRedisRefusalWaitsNotForRedis: a refusal decided before the
// rate-limit step (a bad token, whose failure budget is local; no token on
// a required route) needed no Redis before peekLimit. With Redis paused it
// must not now wait redis.timeout just to decorate the 401 with headers.
func TestRedisRefusalWaitsNotForRedis(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 500 * time.Millisecond
	e := newRedisEnv(t, oneServer(srv)+"  timeout: 500ms\n", "fail_closed", "local")
	if res := e.do(e.signed("/api/x", e.token(nil))); res.status != 200 {
		t.Fatalf("Redis up: got %d %s, want 200", res.status, res.body)
	}
	srv.Pause()
	defer srv.Resume()
	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"bad token", []string{"Authorization", "DPoP not-a-token", "DPoP", "x"}},
		{"no token", nil},
	} {
		start := time.Now()
		res := e.do(e.req("GET", "/api/x", tc.hdr...))
		took := time.Since(start)
		if res.status != 401 {
			t.Fatalf("%s: got %d %s, want 401", tc.name, res.status, res.body)
		}
		if took > timeout/2 {
			t.Errorf("%s: the 401 took %v with Redis paused (redis.timeout %v): it waited on Redis for its rate-limit headers", tc.name, took.Round(time.Millisecond), timeout)
		}
	}
}

// TestRedisRefusalIsNoFailOpenDecision: dpopgate_rate_limit_fail_open_total
// counts "every request a failure mode decided" (TestRedisFailureModes). A
// 401 for a missing token was decided by the auth step, not by on_error;
// the peek for its headers must not count it as let through unlimited.
func TestRedisRefusalIsNoFailOpenDecision(t *testing.T) {
	srv := redistest.Start(t)
	e := newRedisEnv(t, oneServer(srv), "fail_closed", "fail_open")
	srv.Stop()
	for range 3 {
		if res := e.do(e.req("GET", "/api/x")); res.status != 401 {
			t.Fatalf("got %d %s, want 401", res.status, res.body)
		}
	}
	if got := scrape(t, e.gw.AdminHandler())["dpopgate_rate_limit_fail_open_total{}"]; got != 0 {
		t.Errorf("dpopgate_rate_limit_fail_open_total after three 401s: %v, want 0", got)
	}
}
