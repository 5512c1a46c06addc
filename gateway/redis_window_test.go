package gateway

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/replay/redistest"
)

// TestRedisReplayAtWindowEnd: a proof's replay key outlives every replica's
// acceptance of it, even when the replica that takes it last is slow to
// claim it. Replica a takes a proof at its iat; replica b gets a copy at
// the last moment of the iat window (max_age 1s, no skew), and its claim
// reaches Redis 300ms later (Redis busy): the copy must be refused, not
// accepted because the key set by a, for max_age, expired in between.
func TestRedisReplayAtWindowEnd(t *testing.T) {
	srv := redistest.Start(t)
	e := newRedisEnv(t, oneServer(srv)+"  timeout: 2s\ndpop:\n  max_age: 1s\n  clock_skew: 0s\n", "fail_closed", "fail_closed")
	token := e.token(nil)
	realClock := func() *env {
		r := *e
		gw, err := New(e.cfg, Options{Clock: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gw.Close() })
		r.gw = gw
		r.srv = httptest.NewServer(gw)
		t.Cleanup(r.srv.Close)
		return &r
	}
	a, b := realClock(), realClock()
	// Warm both: connections made, script cached. At the start of a
	// second: iat has whole seconds, so a proof made late in one is too
	// old for max_age 1s a few milliseconds into the next.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 5*time.Millisecond)))
	for _, x := range []*env{a, b} {
		e.clock.now = time.Now()
		if res := x.do(x.signed("/api/x", token)); res.status != 200 {
			t.Fatalf("warm-up: got %d %s", res.status, res.body)
		}
	}

	// At the start of a second, so that the proof's iat, in whole seconds,
	// is when a takes it.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 5*time.Millisecond)))
	iat := time.Now()
	proof, err := e.key.Proof("GET", publicURL+"/api/x", token, "", iat)
	if err != nil {
		t.Fatal(err)
	}
	send := func(x *env) result {
		return x.do(x.req("GET", "/api/x", "Authorization", "DPoP "+token, "DPoP", proof))
	}
	if res := send(a); res.status != 200 {
		t.Fatalf("first use, replica a: got %d %s, want 200", res.status, res.body)
	}
	// NumericDate has whole seconds: the window ends at iat's second + 1s.
	end := iat.Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(end.Add(-100 * time.Millisecond)))
	blocker := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer blocker.Close()
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		blocker.Eval(context.Background(), busyScript, nil, 300000)
	}()
	time.Sleep(20 * time.Millisecond)
	res := send(b)
	<-busy
	if res.status == 200 {
		t.Fatalf("copy at the window's end, replica b, Redis slow: got 200, want it refused (accepted twice)")
	}
	t.Logf("copy at the window's end: %d %s", res.status, res.body)
}
