package gateway

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay"
	"github.com/dpopgate/dpopgate/replay/redistest"
)

// batchSizes are the pipelines sent so far and the operations in them.
func batchSizes(t *testing.T, b *redisBackends) (pipelines uint64, ops float64) {
	t.Helper()
	var m dto.Metric
	if err := b.metrics.redisBatch.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestRedisBatchAlone: a request that finds no round trip in flight is sent at
// once, alone; the requests that come while it is in flight go together
// in the next pipeline, and each gets its own outcome.
func TestRedisBatchAlone(t *testing.T) {
	srv := redistest.Start(t)
	b := newTestBackends(t, srv.Addr(), 10*time.Second)
	ctx := t.Context()
	l := ratelimit.Limit{Count: 60, Period: time.Hour, Burst: 60}
	if _, err := b.AllowN(ctx, "warm", l, 1); err != nil { // a connection, and the script loaded
		t.Fatal(err)
	}
	pipelines0, ops0 := batchSizes(t, b)
	const n = 100
	out := make(chan admission, n)
	// "first", then 99 more: k1..k49 twice each, k0 once, so 50 of them
	// are new.
	queueBehindFirst(t, srv, b, n, func(i int) {
		key := "first"
		if i > 0 {
			key = fmt.Sprint("k", i%50)
		}
		out <- b.claimAllowN(ctx, key, time.Minute, "bucket", l, 1)
	})

	claimed, replayed, allowed, denied := 0, 0, 0, 0
	for range n {
		a := <-out
		if accepted(t, a.claimErr) {
			claimed++
		} else {
			replayed++
		}
		if a.limitErr != nil {
			t.Fatalf("decision: %v", a.limitErr)
		}
		if a.decision.Allowed {
			allowed++
		} else {
			denied++
		}
	}
	if claimed != 51 || replayed != 49 {
		t.Errorf("claims: got %d accepted and %d replayed, want 51 and 49", claimed, replayed)
	}
	if allowed != 60 || denied != 40 {
		t.Errorf("decisions on a bucket of 60: got %d allowed and %d denied, want 60 and 40", allowed, denied)
	}
	wantTwoPipelines(t, b, pipelines0, ops0, n)
}

// queueBehindFirst pauses srv, starts call(0) and waits until its round
// trip is in flight, starts call(1) to call(n-1) and waits until they are
// queued behind it, and resumes srv.
func queueBehindFirst(t *testing.T, srv *redistest.Server, b *redisBackends, n int, call func(i int)) {
	t.Helper()
	h := &countingHook{}
	b.client.AddHook(h)
	srv.Pause()
	go call(0)
	// Begun: its request holds the batch's lock. (A connection dialled for
	// it adds its own handshake commands, which the paused server holds.)
	waitFor(t, "the first operation in flight", func() bool { return h.begun() >= 1 })
	for i := 1; i < n; i++ {
		go call(i)
	}
	// The worker holds one of them, waiting for the pipeline in flight.
	waitFor(t, fmt.Sprint(n-1, " operations queued"), func() bool { return len(b.batch.ops) == n-2 })
	srv.Resume()
}

// wantTwoPipelines checks that the n operations queueBehindFirst started,
// all answered, went in two pipelines since batchSizes said pipelines0 and
// ops0: the first alone, then the rest.
func wantTwoPipelines(t *testing.T, b *redisBackends, pipelines0 uint64, ops0 float64, n int) {
	t.Helper()
	if pipelines, ops := batchSizes(t, b); pipelines-pipelines0 != 2 || ops-ops0 != float64(n) {
		t.Errorf("got %d pipelines holding %v operations, want 2 (the first alone, then the %d queued) holding %d",
			pipelines-pipelines0, ops-ops0, n-1, n)
	}
}

// accepted reports whether a claim was accepted (true) or refused as a
// replay (false), and fails t on any other outcome.
func accepted(t *testing.T, err error) bool {
	t.Helper()
	switch {
	case err == nil:
		return true
	case errors.Is(err, replay.ErrReplayed):
		return false
	}
	t.Fatalf("claim: %v", err)
	return false
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRedisBatchSenderGivesUp: the request whose goroutine sends a
// pipeline has given up; the other requests' operations it takes along go
// through all the same.
func TestRedisBatchSenderGivesUp(t *testing.T) {
	srv := redistest.Start(t)
	b := newTestBackends(t, srv.Addr(), 5*time.Second)
	// A batch with no worker: what is queued stays queued.
	b.batch = &redisBatch{b: b, ops: make(chan *redisOp, redisQueue), quit: make(chan struct{})}

	// Another request's claim, queued while a pipeline is (said to be) in
	// flight.
	b.batch.mu.Lock()
	other := make(chan error, 1)
	go func() { other <- b.Claim(t.Context(), "other", time.Minute) }()
	waitFor(t, "the other claim queued", func() bool { return len(b.batch.ops) == 1 })
	b.batch.mu.Unlock()

	// The sender, whose client has gone, takes it along.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Claim(ctx, "sender", time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("the sender's own claim: got %v, want context.Canceled", err)
	}
	if err := <-other; err != nil {
		t.Errorf("the other request's claim: got %v, want it through (the sender's giving up is its own)", err)
	}
	if err := b.Claim(t.Context(), "other", time.Minute); !errors.Is(err, replay.ErrReplayed) {
		t.Errorf("the other claim again: got %v, want ErrReplayed (it was stored)", err)
	}
	if err := b.Claim(t.Context(), "sender", time.Minute); err != nil {
		t.Errorf("the sender's key afterwards: got %v, want it claimable (nothing was claimed for it)", err)
	}
}

// TestRedisBatchClosed: once the batch is closed, an operation that would
// have queued for the worker fails at once rather than waiting out
// redis.timeout.
func TestRedisBatchClosed(t *testing.T) {
	srv := redistest.Start(t)
	b := newTestBackends(t, srv.Addr(), time.Hour)
	b.batch.mu.Lock() // a pipeline (said to be) in flight: the claim below queues
	defer b.batch.mu.Unlock()
	b.batch.close()
	done := make(chan error, 1)
	go func() { done <- b.Claim(t.Context(), "late", time.Minute) }()
	select {
	case err := <-done:
		if !errors.Is(err, errRedisClosed) {
			t.Errorf("a claim after close: got %v, want errRedisClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a claim after close still waits after 10s (redis.timeout is an hour)")
	}
}

// TestRedisBatchCapped: decisions under a cap that queue behind a round
// trip in flight go together in the next pipeline, each under the cap in
// turn: as many granted as the cap holds, the rest refused by the cap with
// their buckets untouched.
func TestRedisBatchCapped(t *testing.T) {
	srv := redistest.Start(t)
	b := newTestBackends(t, srv.Addr(), 10*time.Second)
	ctx := t.Context()
	route := ratelimit.Limit{Count: 60, Period: time.Hour}
	capL := ratelimit.Limit{Count: 5, Period: time.Hour}
	if _, err := b.AllowCapped(ctx, "warm", route, "warmcap", capL); err != nil { // the script loaded
		t.Fatal(err)
	}
	pipelines0, ops0 := batchSizes(t, b)
	const n = 10
	out := make(chan ratelimit.Capped, n)
	queueBehindFirst(t, srv, b, n, func(i int) {
		c, err := b.AllowCapped(ctx, fmt.Sprint("route", i%3), route, "cap", capL)
		if err != nil {
			t.Error(err)
		}
		out <- c
	})

	granted := 0
	for range n {
		c := <-out
		switch {
		case c.Bucket.Allowed && c.Cap.Allowed:
			granted++
		case c.Cap.Allowed || c.Bucket != (ratelimit.Decision{}):
			t.Errorf("got %+v, want refused by the cap with the bucket untouched", c)
		}
	}
	if granted != 5 {
		t.Errorf("granted under a cap of 5: got %d, want 5", granted)
	}
	wantTwoPipelines(t, b, pipelines0, ops0, n)
}
