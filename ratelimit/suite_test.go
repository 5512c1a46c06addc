package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// limiter is what the conformance suite exercises: the methods every
// backend shares.
type limiter interface {
	AllowN(ctx context.Context, key string, l Limit, n int) (Decision, error)
	AllowCapped(ctx context.Context, key string, l Limit, capKey string, capL Limit) (Capped, error)
}

// harness is one backend under test as the conformance suite sees it.
type harness struct {
	limiter limiter
	// now is the backend's clock: the fake clock for Memory, time.Now for
	// Redis.
	now func() time.Time
	// advance moves now forward: a fake clock's step, or a real sleep. The
	// suite never advances by more than tens of milliseconds at a time.
	advance func(time.Duration)
	// slack is how far a backend on real time may drift from the numbers
	// a fake clock gives exactly: 0 for a fake clock, tens of ms otherwise.
	slack time.Duration
	// scale stretches the cases that refill within milliseconds (the fast
	// limit) by this factor, so that a backend on real time, on a busy
	// machine, cannot see a token arrive early; 0 means 1.
	scale int
}

// step is one call in a conformance case: advance the clock by wait, then
// AllowN(key, limit, n), and compare the Decision. A zero Limit means the
// case's limit.
type step struct {
	wait      time.Duration
	key       string
	limit     Limit
	n         int
	allowed   bool
	remaining int
	reset     time.Duration // want Reset - now
	retry     time.Duration // want RetryAfter
}

var (
	perMinute60 = Limit{Count: 60, Period: time.Minute}            // 1 token a second
	perHour10   = Limit{Count: 10, Period: time.Hour}              // no refill to speak of during a test
	perHour5    = Limit{Count: 5, Period: time.Hour}               // a second, smaller policy
	fast        = Limit{Count: 50, Period: time.Second, Burst: 2}  // 1 token every 20ms
	burst100    = Limit{Count: 100, Period: time.Hour, Burst: 100} // perHour10 reloaded larger
	burst2      = Limit{Count: 10, Period: time.Hour, Burst: 2}    // perHour10 reloaded smaller
	hourStep    = time.Hour / 10                                   // the refill time of one perHour10 token
)

// testLimiter is the conformance suite every ratelimit backend passes: the
// same calls must give the same Decisions from Memory and from Redis.
// newHarness returns a fresh, empty backend for each case (for Redis, a
// fresh key prefix will do).
func testLimiter(t *testing.T, newHarness func(t *testing.T) harness) {
	tests := []struct {
		name  string
		limit Limit
		steps []step
	}{
		{
			name:  "ok/burst allowed then denied, remaining counts down",
			limit: perHour10,
			steps: repeatSteps(10, func(i int) step {
				return step{n: 1, allowed: true, remaining: 9 - i, reset: time.Duration(i+1) * hourStep}
			}, step{n: 1, allowed: false, remaining: 0, reset: 10 * hourStep, retry: hourStep}),
		},
		{
			name:  "ok/reset and retry after at 60 per minute",
			limit: perMinute60,
			steps: []step{
				{n: 1, allowed: true, remaining: 59, reset: time.Second},
				{n: 59, allowed: true, remaining: 0, reset: time.Minute},
				{n: 1, allowed: false, remaining: 0, reset: time.Minute, retry: time.Second},
			},
		},
		{
			name:  "ok/take several at once",
			limit: perHour10,
			steps: []step{
				{n: 4, allowed: true, remaining: 6, reset: 4 * hourStep},
				{n: 6, allowed: true, remaining: 0, reset: 10 * hourStep},
			},
		},
		{
			name:  "ok/refill after advance",
			limit: fast,
			steps: []step{
				{n: 1, allowed: true, remaining: 1, reset: 20 * time.Millisecond},
				{n: 1, allowed: true, remaining: 0, reset: 40 * time.Millisecond},
				{n: 1, allowed: false, remaining: 0, reset: 40 * time.Millisecond, retry: 20 * time.Millisecond},
				{wait: 25 * time.Millisecond, n: 1, allowed: true, remaining: 0, reset: 35 * time.Millisecond},
				{n: 1, allowed: false, remaining: 0, reset: 35 * time.Millisecond, retry: 15 * time.Millisecond},
				{wait: 60 * time.Millisecond, n: 0, allowed: true, remaining: 2},
			},
		},
		{
			name:  "ok/peek does not consume",
			limit: perHour10,
			steps: []step{
				{n: 0, allowed: true, remaining: 10},
				{n: 0, allowed: true, remaining: 10},
				{n: 3, allowed: true, remaining: 7, reset: 3 * hourStep},
				{n: 0, allowed: true, remaining: 7, reset: 3 * hourStep},
				{n: 7, allowed: true, remaining: 0, reset: 10 * hourStep},
				{n: 0, allowed: false, remaining: 0, reset: 10 * hourStep, retry: hourStep},
				{n: 0, allowed: false, remaining: 0, reset: 10 * hourStep, retry: hourStep},
			},
		},
		{
			name:  "ok/keys are independent",
			limit: perHour5,
			steps: []step{
				{key: "a", n: 5, allowed: true, remaining: 0, reset: time.Hour},
				{key: "a", n: 1, allowed: false, remaining: 0, reset: time.Hour, retry: time.Hour / 5},
				{key: "b", n: 1, allowed: true, remaining: 4, reset: time.Hour / 5},
				{key: "a", n: 0, allowed: false, remaining: 0, reset: time.Hour, retry: time.Hour / 5},
			},
		},
		{
			name:  "ok/limits are independent per key",
			limit: perHour10,
			steps: []step{
				{key: "a", n: 1, allowed: true, remaining: 9, reset: hourStep},
				{key: "b", limit: perHour5, n: 1, allowed: true, remaining: 4, reset: time.Hour / 5},
				{key: "a", n: 1, allowed: true, remaining: 8, reset: 2 * hourStep},
				{key: "b", limit: perHour5, n: 4, allowed: true, remaining: 0, reset: time.Hour},
				{key: "a", n: 1, allowed: true, remaining: 7, reset: 3 * hourStep},
			},
		},
		{
			name:  "ok/a larger limit after reload keeps the tokens and raises the cap",
			limit: perHour10,
			steps: []step{
				{n: 5, allowed: true, remaining: 5, reset: 5 * hourStep},
				{limit: burst100, n: 1, allowed: true, remaining: 4, reset: 96 * (time.Hour / 100)},
			},
		},
		{
			name:  "ok/a smaller limit after reload caps the tokens",
			limit: perHour10,
			steps: []step{
				{n: 5, allowed: true, remaining: 5, reset: 5 * hourStep},
				{limit: burst2, n: 1, allowed: true, remaining: 1, reset: hourStep},
				{limit: burst2, n: 1, allowed: true, remaining: 0, reset: 2 * hourStep},
				{limit: burst2, n: 1, allowed: false, remaining: 0, reset: 2 * hourStep, retry: hourStep},
			},
		},
		{
			name:  "fail/a denied call consumes nothing",
			limit: perHour10,
			steps: []step{
				{n: 8, allowed: true, remaining: 2, reset: 8 * hourStep},
				{n: 3, allowed: false, remaining: 2, reset: 8 * hourStep, retry: hourStep},
				{n: 5, allowed: false, remaining: 2, reset: 8 * hourStep, retry: 3 * hourStep},
				{n: 2, allowed: true, remaining: 0, reset: 10 * hourStep},
			},
		},
		{
			name:  "fail/more than the burst is never allowed",
			limit: perHour10,
			steps: []step{
				{n: 11, allowed: false, remaining: 10},
				{n: 1, allowed: true, remaining: 9, reset: hourStep},
				{n: 11, allowed: false, remaining: 9, reset: hourStep, retry: hourStep},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			k := time.Duration(max(h.scale, 1))
			if tt.limit != fast {
				k = 1
			}
			for i, s := range tt.steps {
				s.wait, s.reset, s.retry = s.wait*k, s.reset*k, s.retry*k
				if s.wait > 0 {
					h.advance(s.wait)
				}
				key, l := "key", tt.limit
				l.Period *= k
				if s.key != "" {
					key = s.key
				}
				if s.limit != (Limit{}) {
					l = s.limit
				}
				now := h.now()
				got, err := h.limiter.AllowN(t.Context(), key, l, s.n)
				if err != nil {
					t.Fatalf("step %d: AllowN(%q, %d): %v", i, key, s.n, err)
				}
				checkDecision(t, fmt.Sprintf("step %d: AllowN(%q, %d)", i, key, s.n), h, now, got, Decision{
					Allowed:    s.allowed,
					Limit:      l.Count,
					Remaining:  s.remaining,
					Reset:      now.Add(s.reset),
					RetryAfter: s.retry,
				})
			}
		})
	}

	testCapped(t, newHarness)

	t.Run("ok/64 goroutines racing on one key get exactly the burst", func(t *testing.T) {
		h := newHarness(t)
		l := Limit{Count: 10, Period: time.Hour}
		allowed := race(t, 64, func(int) (bool, error) {
			d, err := h.limiter.AllowN(t.Context(), "hot", l, 1)
			return d.Allowed, err
		})
		if allowed != 10 {
			t.Errorf("allowed: got %d, want 10", allowed)
		}
		d, err := h.limiter.AllowN(t.Context(), "hot", l, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.Remaining != 0 || d.Allowed {
			t.Errorf("after the race: got remaining %d allowed %v, want 0 false", d.Remaining, d.Allowed)
		}
	})
}

// repeatSteps returns count steps made by f, then the extra steps.
func repeatSteps(count int, f func(i int) step, extra ...step) []step {
	steps := make([]step, 0, count+len(extra))
	for i := range count {
		steps = append(steps, f(i))
	}
	return append(steps, extra...)
}

// checkDecision compares got with want, allowing the harness's slack on
// Reset and RetryAfter. Allowed, Limit and Remaining must match exactly: the
// cases keep whole-token counts a few milliseconds of drift cannot change.
func checkDecision(t *testing.T, what string, h harness, now time.Time, got, want Decision) {
	t.Helper()
	if got.Allowed != want.Allowed {
		t.Errorf("%s: Allowed: got %v, want %v", what, got.Allowed, want.Allowed)
	}
	if got.Limit != want.Limit {
		t.Errorf("%s: Limit: got %d, want %d", what, got.Limit, want.Limit)
	}
	if got.Remaining != want.Remaining {
		t.Errorf("%s: Remaining: got %d, want %d", what, got.Remaining, want.Remaining)
	}
	if d := got.Reset.Sub(want.Reset); d < -h.slack || d > h.slack {
		t.Errorf("%s: Reset: got now+%v, want now+%v", what, got.Reset.Sub(now), want.Reset.Sub(now))
	}
	if d := got.RetryAfter - want.RetryAfter; d < -h.slack || d > h.slack {
		t.Errorf("%s: RetryAfter: got %v, want %v", what, got.RetryAfter, want.RetryAfter)
	}
}

// testCapped is the part of the suite on AllowCapped: a look at the cap,
// then the bucket, then the cap, and a refusal takes nothing.
func testCapped(t *testing.T, newHarness func(t *testing.T) harness) {
	// want is what a step's Capped must show: allowed and remaining of
	// each half (a Bucket of zero Limit: the zero Decision).
	type want struct {
		bucketAllowed bool
		bucketLeft    int
		capAllowed    bool
		capLeft       int
	}
	check := func(t *testing.T, what string, got Capped, l, capL Limit, w want) {
		t.Helper()
		if w.bucketLeft < 0 {
			if got.Bucket != (Decision{}) {
				t.Errorf("%s: Bucket: got %+v, want the zero Decision (untouched)", what, got.Bucket)
			}
		} else if got.Bucket.Allowed != w.bucketAllowed || got.Bucket.Remaining != w.bucketLeft || got.Bucket.Limit != l.Count {
			t.Errorf("%s: Bucket: got %+v, want allowed %v with %d left of %d", what, got.Bucket, w.bucketAllowed, w.bucketLeft, l.Count)
		}
		if got.Cap.Allowed != w.capAllowed || got.Cap.Remaining != w.capLeft || got.Cap.Limit != capL.Count {
			t.Errorf("%s: Cap: got %+v, want allowed %v with %d left of %d", what, got.Cap, w.capAllowed, w.capLeft, capL.Count)
		}
	}

	take := func(t *testing.T, h harness, key string, l Limit, capL Limit) Capped {
		t.Helper()
		c, err := h.limiter.AllowCapped(t.Context(), key, l, "cap", capL)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("fail/capped: a call the cap refuses takes nothing from the bucket", func(t *testing.T) {
		h := newHarness(t)
		k := time.Duration(max(h.scale, 1))
		capL := fast // 1 token every 20ms, 2 at most
		capL.Period *= k
		steps := []want{{true, 9, true, 1}, {true, 8, true, 0}, {false, -1, false, 0}}
		var got Capped
		for i, w := range steps {
			got = take(t, h, "b", perHour10, capL)
			check(t, fmt.Sprintf("call %d", i), got, perHour10, capL, w)
		}
		if got.Cap.RetryAfter <= 0 || got.Cap.RetryAfter > 20*time.Millisecond*k+h.slack {
			t.Errorf("the cap's RetryAfter: got %v, want at most %v", got.Cap.RetryAfter, 20*time.Millisecond*k)
		}
		h.advance(got.Cap.RetryAfter)
		check(t, "once the cap refilled", take(t, h, "b", perHour10, capL), perHour10, capL, want{true, 7, true, 0})
	})

	t.Run("fail/capped: a call the bucket refuses takes nothing from the cap", func(t *testing.T) {
		h := newHarness(t)
		one := Limit{Count: 1, Period: time.Hour}
		for i, w := range []want{{true, 0, true, 9}, {false, 0, true, 9}, {false, 0, true, 9}} {
			got := take(t, h, "b", one, perHour10)
			check(t, fmt.Sprintf("call %d", i), got, one, perHour10, w)
			if i > 0 && (got.Bucket.RetryAfter < hourStep*10-h.slack || got.Bucket.RetryAfter > hourStep*10) {
				t.Errorf("call %d: the bucket's RetryAfter: got %v, want an hour", i, got.Bucket.RetryAfter)
			}
		}
		// Another bucket under the same cap: its take is the cap's second.
		check(t, "another bucket", take(t, h, "other", one, perHour10), one, perHour10, want{true, 0, true, 8})
	})

	t.Run("ok/capped: the cap spans buckets, each bucket its own", func(t *testing.T) {
		h := newHarness(t)
		capL := Limit{Count: 3, Period: time.Hour}
		for i, w := range []want{{true, 9, true, 2}, {true, 4, true, 1}, {true, 8, true, 0}, {false, -1, false, 0}, {false, -1, false, 0}} {
			key, l := "a", perHour10
			if i%2 == 1 {
				key, l = "b", perHour5
			}
			check(t, fmt.Sprintf("call %d (%s)", i, key), take(t, h, key, l, capL), l, capL, w)
		}
	})

	t.Run("ok/capped: a cap reloaded smaller holds at once", func(t *testing.T) {
		h := newHarness(t)
		check(t, "call 0", take(t, h, "b", perHour10, perHour10), perHour10, perHour10, want{true, 9, true, 9})
		for i, w := range []want{{true, 8, true, 1}, {true, 7, true, 0}, {false, -1, false, 0}} {
			check(t, fmt.Sprintf("call %d under burst 2", i+1), take(t, h, "b", perHour10, burst2), perHour10, burst2, w)
		}
	})

	t.Run("ok/capped: 64 goroutines under a cap of 10 are granted exactly 10", func(t *testing.T) {
		h := newHarness(t)
		granted := race(t, 64, func(i int) (bool, error) {
			c, err := h.limiter.AllowCapped(t.Context(), fmt.Sprint("b", i%4), burst100, "cap", perHour10)
			return c.Bucket.Allowed && c.Cap.Allowed, err
		})
		if granted != 10 {
			t.Errorf("granted: got %d, want 10", granted)
		}
	})
}

// race runs call from n goroutines at once, and returns how many were
// granted; an error fails t.
func race(t *testing.T, n int, call func(i int) (granted bool, err error)) int {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted int
		errs    []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ok, err := call(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				granted++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	return granted
}
