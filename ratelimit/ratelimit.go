// Package ratelimit decides whether a request fits in its token bucket.
//
// A bucket holds at most Limit.Burst tokens and refills at Limit.Count tokens
// per Limit.Period. Every backend (Memory here, Redis for shared budgets)
// returns the same Decision for the same sequence of calls, so the gateway
// writes the same X-RateLimit-* and RateLimit headers whichever one runs.
package ratelimit

import (
	"time"
)

// Limit is one token-bucket policy, as written in config: "600/m" with a
// burst of 600 is Limit{Count: 600, Period: time.Minute, Burst: 600}.
// The zero Limit (Count 0) means "unlimited" and is never passed to a backend.
type Limit struct {
	Count  int           // tokens added per Period; X-RateLimit-Limit
	Period time.Duration // the window named in RateLimit-Policy (w=)
	Burst  int           // bucket capacity; defaults to Count when 0
}

// Unlimited reports whether l imposes no limit.
func (l Limit) Unlimited() bool { return l.Count <= 0 || l.Period <= 0 }

// Capacity is the bucket size: Burst, or Count when Burst is unset.
func (l Limit) Capacity() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Count
}

// PerSecond is the refill rate in tokens per second.
func (l Limit) PerSecond() float64 {
	if l.Unlimited() {
		return 0
	}
	return float64(l.Count) / l.Period.Seconds()
}

// Decision is the outcome of one call to a limiter. It is a value: the
// gateway needs every field for the response headers, allowed or not.
// Memory.AllowN documents how each field is computed; every backend
// computes them the same way.
type Decision struct {
	Allowed    bool
	Limit      int           // the policy's Count (requests per Period)
	Remaining  int           // whole tokens left after this call
	Reset      time.Time     // when the bucket will be full again
	RetryAfter time.Duration // how long until one token is available; 0 when Allowed
}

// Capped is the outcome of a call that takes a token from a bucket under a
// cap, a second bucket that every call under it draws on as well (the
// gateway's anonymous_ip_cap, across a client's routes). The cap is looked
// at first: when it refuses, Cap says so and Bucket is the zero Decision,
// the bucket untouched. Otherwise Bucket is the bucket's Decision, and Cap
// the cap's: a look (as AllowN with n 0 takes) when the bucket refused, the
// take when it granted. The call is granted when both are Allowed.
type Capped struct {
	Bucket, Cap Decision
}
