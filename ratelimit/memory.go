package ratelimit

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the bucket count a Memory holds when MemoryOptions.MaxKeys
// is zero: a million client IPs or client ids, at most about 155 MB.
const DefaultMaxKeys = 1_000_000

const (
	// maxShards bounds lock contention: buckets live in up to this many
	// independently locked shards, picked by a hash of the key.
	maxShards = 64
	// minShardKeys keeps shards large enough that random imbalance between
	// them (about the square root of their size) stays a few percent, so a
	// small store behaves as one bounded map rather than as many tiny ones.
	minShardKeys = 1024
	// sweepOnInsert is how many buckets, sampled at random, an insert below
	// capacity looks at, dropping those that have refilled to full. Two
	// per insert keep full buckets to about half of a busy shard.
	sweepOnInsert = 2
	// sweepWhenFull is the sample an insert into a shard at capacity looks
	// at: it drops the full buckets in it or, if there are none, the least
	// recently used one. This is the approximate LRU of Redis, which
	// samples 5 by default; each sampled bucket is a likely cache miss
	// (about 2µs an insert at capacity for 8, 2.7µs for 16, with a million
	// buckets).
	sweepWhenFull = 8
)

// MemoryOptions configure a Memory. The zero value is ready to use.
type MemoryOptions struct {
	// MaxKeys bounds the number of buckets held; 0 means DefaultMaxKeys.
	MaxKeys int
	// Clock tells the time; nil means time.Now. Tests inject a fake clock.
	Clock func() time.Time
}

// Memory is the "local" backend: token buckets held in this process, one
// golang.org/x/time/rate.Limiter per key. It is safe for concurrent use.
//
// Memory holds at most MaxKeys buckets, 130 to 155 bytes each whatever the
// key's length (the range is the map's growth; a million IPv4 keys measured
// 152 MB), because a bucket is stored under a 128-bit keyed digest of its
// key rather than the key itself.
// Buckets live in up to 64 shards, each with its share of MaxKeys and its own
// lock; a shard can fill up a little before the store as a whole does.
//
// A bucket that has refilled to full carries no information, since a new
// bucket starts full, so Memory drops full buckets when it comes across
// them: each insert samples a few buckets of its shard. An insert into a
// shard at capacity samples more and drops the full ones among them or, if
// there are none, the least recently used of the sample (an approximate
// LRU) even though it is not full. That hands the evicted key a fresh, full
// budget the next time it is seen: under a flood of more distinct keys than
// MaxKeys, a client can get more than its limit. Size MaxKeys above the
// number of keys active within one refill period (Capacity / PerSecond).
//
// Create a Memory with NewMemory; the zero Memory is not usable.
type Memory struct {
	seed0, seed1 maphash.Seed
	clock        func() time.Time
	shards       []shard
}

// digest is the map key for a bucket: 128 bits of keyed hash, so buckets
// cost the same for any key length and an attacker, who does not know the
// per-process seeds, cannot make two keys share a bucket.
type digest [16]byte

// bucket is one key's token bucket: the limiter's 80 bytes and two
// timestamps fill a 96-byte size class exactly.
type bucket struct {
	lim rate.Limiter
	// used is when the bucket was last asked about, and fullAt when it
	// will have refilled to full (the Reset of the last Decision), both
	// in Unix nanoseconds. With fullAt at hand, a sweep need not lock the
	// limiter and do its arithmetic for every bucket it samples.
	used, fullAt int64
}

// shard is a bounded map of buckets; mu guards it and every bucket in it.
type shard struct {
	mu      sync.Mutex
	buckets map[digest]*bucket
	max     int
	_       [64]byte // keep neighbouring shards' locks off one cache line
}

// NewMemory returns an empty Memory configured by opts.
func NewMemory(opts MemoryOptions) *Memory {
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	n := 1
	for n < maxShards && maxKeys/(2*n) >= minShardKeys {
		n *= 2
	}
	m := &Memory{
		seed0:  maphash.MakeSeed(),
		seed1:  maphash.MakeSeed(),
		clock:  clock,
		shards: make([]shard, n),
	}
	for i := range m.shards {
		// Shard sizes add up to maxKeys exactly.
		s := &m.shards[i]
		s.max = maxKeys / n
		if i < maxKeys%n {
			s.max++
		}
		s.buckets = make(map[digest]*bucket)
	}
	return m
}

// AllowN takes n tokens from the bucket named key under limit l, if it holds
// that many, and reports the outcome; n == 0 only looks at the bucket. It is
// safe for concurrent use, and never returns an error: the signature is the
// one the Redis backend shares.
//
// A key seen for the first time gets a full bucket of l.Capacity() tokens
// refilling at l.PerSecond(). If a later call passes a different Limit for
// the key (a config reload), the bucket keeps its tokens, capped at the new
// capacity, and refills at the new rate from then on.
//
// The Decision, which every backend computes the same way:
//
//   - Allowed: n tokens were taken. A denied call takes nothing. For n == 0,
//     Allowed reports whether a call with n == 1 would have been allowed now,
//     and nothing is taken (the gateway peeks at the auth-failure budget
//     this way before it spends any crypto on a request).
//   - Limit: l.Count.
//   - Remaining: the whole tokens left in the bucket after this call.
//   - Reset: the instant the bucket will be full again if nothing more is
//     taken, to the nanosecond; now if it is full.
//   - RetryAfter: 0 when allowed. When denied, the time until max(n, 1)
//     tokens are available; a request for more than l.Capacity() tokens is
//     never allowed, and gets the time until the bucket is full.
//
// A negative n counts as 0. The unlimited Limit (l.Unlimited()), which the
// gateway never passes, is always allowed and keeps no bucket.
func (m *Memory) AllowN(_ context.Context, key string, l Limit, n int) (Decision, error) {
	now := m.clock()
	if l.Unlimited() {
		return Decision{Allowed: true, Limit: l.Count, Reset: now}, nil
	}
	n = max(n, 0)
	perSecond, capacity := rate.Limit(l.PerSecond()), l.Capacity()

	k := m.digest(key)
	s := &m.shards[k[0]%byte(len(m.shards))]
	s.mu.Lock()
	b := s.buckets[k]
	if b == nil && (n == 0 || n > capacity) {
		// A new bucket would be full and stay full: answer for it
		// without spending memory on it.
		s.mu.Unlock()
		c := float64(capacity)
		return decide(l, now, c, n, n == 0 && c >= 1), nil
	}
	if b == nil {
		b = s.insert(k, now, perSecond, capacity)
	} else {
		b.used = now.UnixNano()
		if b.lim.Limit() != perSecond {
			b.lim.SetLimitAt(now, perSecond)
		}
		if b.lim.Burst() != capacity {
			b.lim.SetBurstAt(now, capacity)
		}
	}
	var allowed bool
	if n > 0 {
		allowed = b.lim.AllowN(now, n)
	}
	tokens := b.lim.TokensAt(now)
	if n == 0 {
		allowed = tokens+tokenEpsilon >= 1
	}
	d := decide(l, now, tokens, n, allowed)
	b.fullAt = d.Reset.UnixNano()
	s.mu.Unlock()
	return d, nil
}

// AllowCapped takes one token from the bucket key under l and one from the
// bucket capKey under capL, as Capped describes: a look at the cap, then
// the bucket, then the cap, each step only if the one before granted. Each
// step is atomic, the three together are not: a concurrent call can take
// the cap's last token between the look and the take, and then the bucket
// has given its token to a call the cap refuses (Redis runs the three as
// one). It never returns an error.
func (m *Memory) AllowCapped(ctx context.Context, key string, l Limit, capKey string, capL Limit) (Capped, error) {
	return allowCapped(ctx, m.AllowN, key, l, capKey, capL)
}

// allowCapped is AllowCapped done with three calls of allow, each of them
// atomic, the three together not.
func allowCapped(ctx context.Context, allow func(context.Context, string, Limit, int) (Decision, error),
	key string, l Limit, capKey string, capL Limit) (Capped, error) {
	var c Capped
	var err error
	if c.Cap, err = allow(ctx, capKey, capL, 0); err != nil || !c.Cap.Allowed {
		return c, err
	}
	if c.Bucket, err = allow(ctx, key, l, 1); err != nil || !c.Bucket.Allowed {
		return c, err
	}
	c.Cap, err = allow(ctx, capKey, capL, 1)
	return c, err
}

// Len reports how many buckets m holds, full ones not yet dropped included.
// It is safe for concurrent use.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

func (m *Memory) digest(key string) digest {
	var k digest
	binary.LittleEndian.PutUint64(k[:8], maphash.String(m.seed0, key))
	binary.LittleEndian.PutUint64(k[8:], maphash.String(m.seed1, key))
	return k
}

// insert creates a full bucket for k. Below capacity, it first drops the
// full buckets among a few it samples; at capacity, it samples more and
// drops the full ones or, if there are none, the least recently used one.
// Called with s.mu held.
func (s *shard) insert(k digest, now time.Time, perSecond rate.Limit, capacity int) *bucket {
	if len(s.buckets) < s.max {
		s.sweep(now.UnixNano(), sweepOnInsert, false)
	} else {
		s.sweep(now.UnixNano(), sweepWhenFull, true)
	}
	b := &bucket{lim: *rate.NewLimiter(perSecond, capacity), used: now.UnixNano()}
	s.buckets[k] = b
	return b
}

// sweep looks at up to limit buckets, from a random place in the map, and
// removes those that are full at now. If it removed none and evict is set,
// it removes the least recently used of those it looked at.
func (s *shard) sweep(now int64, limit int, evict bool) {
	var (
		seen, removed int
		victim        *bucket
		victimKey     digest
	)
	for k, b := range s.buckets { // map order is random: a sample
		if now >= b.fullAt {
			delete(s.buckets, k)
			removed++
		} else if victim == nil || b.used < victim.used {
			victim, victimKey = b, k
		}
		if seen++; seen == limit {
			break
		}
	}
	if evict && removed == 0 && victim != nil {
		delete(s.buckets, victimKey)
	}
}
