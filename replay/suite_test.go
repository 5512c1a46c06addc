package replay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// store is what the conformance suite exercises: the method every backend
// shares.
type store interface {
	Claim(ctx context.Context, key string, ttl time.Duration) error
}

// harness is one backend under test as the conformance suite sees it.
type harness struct {
	store store
	// advance moves the backend's clock forward: a fake clock's step for
	// Memory, a real sleep for Redis. The suite never advances by more
	// than tens of milliseconds, and stays 5ms or more from any expiry so
	// that a backend on real time gets the same answers.
	advance func(time.Duration)
	// scale stretches every ttl and wait of the timed cases, so that a
	// backend on real time, on a busy machine, keeps 5ms x scale from any
	// expiry; 0 means 1.
	scale int
}

// claimStep is one call in a conformance case: advance the clock by wait,
// then Claim(key, ttl), and compare the error with want (nil, ErrReplayed,
// ErrFull, or errAny for an error that is neither).
type claimStep struct {
	wait time.Duration
	key  string
	ttl  time.Duration
	want error
}

// errAny stands for any error other than ErrReplayed and ErrFull.
var errAny = errors.New("any other error")

// testStore is the conformance suite every replay backend passes.
// newHarness returns a fresh, empty backend for each case (for Redis, a
// fresh key prefix will do). maxEntries is 0 for the backend's default, or
// the bound a case depends on; a backend that cannot bound its size calls
// t.Skip.
func testStore(t *testing.T, newHarness func(t *testing.T, maxEntries int) harness) {
	const ttl = 50 * time.Millisecond
	tests := []struct {
		name  string
		steps []claimStep
	}{
		{
			name: "ok/first claim succeeds, the second is replayed",
			steps: []claimStep{
				{key: "a", ttl: ttl, want: nil},
				{key: "a", ttl: ttl, want: ErrReplayed},
				{key: "a", ttl: ttl, want: ErrReplayed},
			},
		},
		{
			name: "ok/a claim after the ttl succeeds again",
			steps: []claimStep{
				{key: "a", ttl: ttl, want: nil},
				{wait: 40 * time.Millisecond, key: "a", ttl: ttl, want: ErrReplayed},
				{wait: 15 * time.Millisecond, key: "a", ttl: ttl, want: nil},
				{key: "a", ttl: ttl, want: ErrReplayed},
			},
		},
		{
			name: "ok/a replayed claim does not extend the ttl",
			steps: []claimStep{
				{key: "a", ttl: ttl, want: nil},
				{wait: 30 * time.Millisecond, key: "a", ttl: ttl, want: ErrReplayed},
				{wait: 25 * time.Millisecond, key: "a", ttl: ttl, want: nil},
			},
		},
		{
			name: "ok/different keys are independent",
			steps: []claimStep{
				{key: "a", ttl: ttl, want: nil},
				{key: "b", ttl: ttl, want: nil},
				{key: "a", ttl: ttl, want: ErrReplayed},
				{key: "b", ttl: ttl, want: ErrReplayed},
				{key: "", ttl: ttl, want: nil},
				{key: "", ttl: ttl, want: ErrReplayed},
			},
		},
		{
			name: "ok/each key keeps its own ttl",
			steps: []claimStep{
				{key: "short", ttl: 20 * time.Millisecond, want: nil},
				{key: "long", ttl: 80 * time.Millisecond, want: nil},
				{wait: 30 * time.Millisecond, key: "short", ttl: ttl, want: nil},
				{key: "long", ttl: ttl, want: ErrReplayed},
			},
		},
		{
			name: "fail/a zero ttl is an error and claims nothing",
			steps: []claimStep{
				{key: "a", ttl: 0, want: errAny},
				{key: "a", ttl: ttl, want: nil},
			},
		},
		{
			name: "fail/a negative ttl is an error and claims nothing",
			steps: []claimStep{
				{key: "a", ttl: -time.Second, want: errAny},
				{key: "a", ttl: ttl, want: nil},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 0)
			k := time.Duration(max(h.scale, 1))
			for i, s := range tt.steps {
				s.wait, s.ttl = s.wait*k, s.ttl*k
				if s.wait > 0 {
					h.advance(s.wait)
				}
				checkClaim(t, fmt.Sprintf("step %d: Claim(%q, %v)", i, s.key, s.ttl), h.store.Claim(t.Context(), s.key, s.ttl), s.want)
			}
		})
	}

	t.Run("ok/64 goroutines claiming one key: exactly one succeeds", func(t *testing.T) {
		h := newHarness(t, 0)
		const goroutines = 64
		errs := make([]error, goroutines)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range goroutines {
			wg.Go(func() {
				<-start
				errs[i] = h.store.Claim(t.Context(), "jti", time.Minute)
			})
		}
		close(start)
		wg.Wait()
		ok, replayed := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrReplayed):
				replayed++
			default:
				t.Errorf("Claim: got %v, want nil or ErrReplayed", err)
			}
		}
		if ok != 1 || replayed != goroutines-1 {
			t.Errorf("got %d claimed and %d replayed, want 1 and %d", ok, replayed, goroutines-1)
		}
	})

	t.Run("fail/full of live keys, then room again once they expire", func(t *testing.T) {
		const maxEntries = 8
		h := newHarness(t, maxEntries)
		for i := range maxEntries {
			checkClaim(t, fmt.Sprintf("Claim(k%d)", i), h.store.Claim(t.Context(), fmt.Sprint("k", i), ttl), nil)
		}
		checkClaim(t, "Claim(new) when full", h.store.Claim(t.Context(), "new", ttl), ErrFull)
		checkClaim(t, "Claim(k0) when full", h.store.Claim(t.Context(), "k0", ttl), ErrReplayed)
		h.advance(40 * time.Millisecond)
		checkClaim(t, "Claim(new) when full, before expiry", h.store.Claim(t.Context(), "new", ttl), ErrFull)
		h.advance(15 * time.Millisecond)
		checkClaim(t, "Claim(new) after expiry", h.store.Claim(t.Context(), "new", ttl), nil)
		checkClaim(t, "Claim(new) again", h.store.Claim(t.Context(), "new", ttl), ErrReplayed)
		for i := range maxEntries - 1 {
			checkClaim(t, fmt.Sprintf("Claim(k%d) after expiry", i), h.store.Claim(t.Context(), fmt.Sprint("k", i), ttl), nil)
		}
		checkClaim(t, "Claim(k7) when full again", h.store.Claim(t.Context(), "k7", ttl), ErrFull)
	})
}

// checkClaim compares the error from a Claim with want; errAny matches any
// error other than ErrReplayed and ErrFull.
func checkClaim(t *testing.T, what string, got, want error) {
	t.Helper()
	switch {
	case want == errAny:
		if got == nil || errors.Is(got, ErrReplayed) || errors.Is(got, ErrFull) {
			t.Errorf("%s: got %v, want an error other than ErrReplayed and ErrFull", what, got)
		}
	case !errors.Is(got, want):
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}
