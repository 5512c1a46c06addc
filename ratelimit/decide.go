package ratelimit

import (
	"math"
	"time"
)

// tokenEpsilon absorbs float64 rounding in token counts: a bucket holding
// 58.999999999999 tokens holds 59. rate.Limiter does the same in effect, since
// it truncates the wait for a fractional deficit to whole nanoseconds.
const tokenEpsilon = 1e-9

// decide turns the state of a bucket into a Decision. It is the one place
// the Decision semantics live, so that every backend reports the same
// numbers for the same bucket:
//
//   - tokens is the level after this call (after the take, if allowed);
//   - Limit is l.Count;
//   - Remaining is tokens rounded down, never negative;
//   - Reset is now plus the time the bucket needs to refill to Capacity,
//     exactly, to the nanosecond (rounding to whole seconds for a header is
//     the header writer's job);
//   - RetryAfter is 0 when allowed; when denied, the time until max(n, 1)
//     tokens are in the bucket, or until it is full if max(n, 1) exceeds
//     Capacity (such a request is never allowed).
func decide(l Limit, now time.Time, tokens float64, n int, allowed bool) Decision {
	perSecond := l.PerSecond()
	capacity := float64(l.Capacity())
	tokens = min(max(tokens, 0), capacity)
	d := Decision{
		Allowed:   allowed,
		Limit:     l.Count,
		Remaining: int(math.Floor(tokens + tokenEpsilon)),
		Reset:     now.Add(refillTime(capacity-tokens, perSecond)),
	}
	if !allowed {
		want := min(float64(max(n, 1)), capacity)
		d.RetryAfter = refillTime(want-tokens, perSecond)
	}
	return d
}

// refillTime is how long a bucket refilling at perSecond tokens a second
// takes to gain deficit tokens, rounded up to the nanosecond so that the
// tokens are there when it has passed.
func refillTime(deficit, perSecond float64) time.Duration {
	if deficit <= tokenEpsilon {
		return 0
	}
	if perSecond <= 0 {
		return math.MaxInt64
	}
	ns := math.Ceil(deficit * float64(time.Second) / perSecond)
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}
