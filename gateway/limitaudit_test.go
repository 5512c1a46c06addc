package gateway

import (
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
