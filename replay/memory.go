package replay

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// DefaultMaxEntries is the number of live keys a Memory holds when
// MemoryOptions.MaxEntries is zero: a million proofs, under 60 MB.
const DefaultMaxEntries = 1_000_000

const (
	// maxShards bounds lock contention: keys live in up to this many
	// independently locked shards, picked by the key's digest.
	maxShards = 64
	// minShardEntries keeps shards large enough that random imbalance
	// between them (about the square root of their size) stays a few
	// percent, so a small store fills up as a whole, not shard by shard.
	minShardEntries = 1024
	// sweepOnInsert is how many entries, sampled at random, an insert looks
	// at, deleting the expired ones. With 8, expired entries settle at about
	// an eighth of a busy shard.
	sweepOnInsert = 8
)

// MemoryOptions configure a Memory. The zero value is ready to use.
type MemoryOptions struct {
	// MaxEntries bounds the number of keys held; 0 means DefaultMaxEntries.
	MaxEntries int
	// Clock tells the time; nil means time.Now. Tests inject a fake clock.
	Clock func() time.Time
}

// Memory is a replay store held in this process. It is safe for concurrent
// use.
//
// Memory holds at most MaxEntries keys. It stores a 128-bit keyed digest of
// each key, not the key, with its expiry: 35 to 60 bytes an entry whatever
// the key's length (the range is the map's growth; a million live keys
// measured 56 MB). Keys live in up to 64
// shards, each with its share of MaxEntries and its own lock, so a shard can
// fill up a little before the store as a whole does.
//
// Expired keys are deleted lazily: each insert samples a few entries of its
// shard, and an insert into a shard at capacity sweeps the whole shard, but
// only once one of its entries can have expired and at most once per
// sixteenth of the claim's ttl. A store full of live keys thus answers
// ErrFull without scanning itself on every claim, and may answer it while up
// to about a sixteenth of a shard has expired since its last sweep. Memory
// never forgets a live key to make room.
//
// Create a Memory with NewMemory; the zero Memory is not usable.
type Memory struct {
	seed0, seed1 maphash.Seed
	clock        func() time.Time
	shards       []shard
}

// digest stands for a key: 128 bits of keyed hash. The per-process seeds
// keep anyone from aiming keys at one shard or making two keys collide; a
// collision could only refuse a fresh proof, never accept a replayed one.
type digest [16]byte

// shard is a bounded map of key digests to expiries; mu guards all of it.
type shard struct {
	mu      sync.Mutex
	expires map[digest]int64 // Unix nanoseconds; live while now < expiry
	max     int
	// soonest is at or before the earliest expiry in the shard: until
	// then, a full sweep would find nothing to delete.
	soonest int64
	// swept is when the shard was last swept whole, in Unix nanoseconds.
	swept int64
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

// NewMemory returns an empty Memory configured by opts.
func NewMemory(opts MemoryOptions) *Memory {
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	n := 1
	for n < maxShards && maxEntries/(2*n) >= minShardEntries {
		n *= 2
	}
	m := &Memory{
		seed0:  maphash.MakeSeed(),
		seed1:  maphash.MakeSeed(),
		clock:  clock,
		shards: make([]shard, n),
	}
	for i := range m.shards {
		// Shard sizes add up to maxEntries exactly.
		s := &m.shards[i]
		s.max = maxEntries / n
		if i < maxEntries%n {
			s.max++
		}
		s.expires = make(map[digest]int64)
		s.soonest = math.MaxInt64
	}
	return m
}

// Claim records key for ttl if it is not already recorded, atomically: of
// any number of concurrent claims of one key, exactly one succeeds. A key is
// live from its claim until that claim's ttl has passed; a claim at its
// expiry succeeds, and a refused claim does not extend it. Claim returns
// ErrReplayed if key is live, ErrFull if key is new but its shard is full of
// live keys (see Memory for how promptly expired keys make room), and an
// error if ttl is not positive. It is safe for concurrent use; ctx is not
// used by Memory and is there for the Redis backend.
func (m *Memory) Claim(_ context.Context, key string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("replay: claim with ttl %v, want a positive ttl", ttl)
	}
	now := m.clock().UnixNano()
	expiry := now + int64(ttl)
	if expiry < now {
		expiry = math.MaxInt64
	}
	d := m.digest(key)
	s := &m.shards[d[0]%byte(len(m.shards))]

	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.expires[d]; ok {
		if now < old {
			return ErrReplayed
		}
		// Expired but not yet swept: take its place.
	} else {
		s.sweep(now)
		if len(s.expires) >= s.max && !s.sweepAll(now, ttl) {
			return ErrFull
		}
	}
	s.expires[d] = expiry
	s.soonest = min(s.soonest, expiry)
	return nil
}

// Len reports how many keys m holds, expired ones not yet deleted included.
// It is safe for concurrent use.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.expires)
		s.mu.Unlock()
	}
	return n
}

func (m *Memory) digest(key string) digest {
	var d digest
	binary.LittleEndian.PutUint64(d[:8], maphash.String(m.seed0, key))
	binary.LittleEndian.PutUint64(d[8:], maphash.String(m.seed1, key))
	return d
}

// sweep looks at up to sweepOnInsert entries, from a random place in the
// map, and deletes the expired ones. Called with s.mu held.
func (s *shard) sweep(now int64) {
	seen := 0
	for d, expiry := range s.expires { // map order is random: a sample
		if expiry <= now {
			delete(s.expires, d)
		}
		if seen++; seen == sweepOnInsert {
			return
		}
	}
}

// sweepAll deletes every expired entry and reports whether the shard has
// room for another. It sweeps only once an entry can have expired, and at
// most once per ttl/16, so that a shard full of live keys, whose keys expire
// one by one, costs one scan per sixteenth of a ttl rather than one per
// claim: a claim may be refused while up to about a sixteenth of the
// shard's keys have expired since the last sweep. Called with s.mu held.
func (s *shard) sweepAll(now int64, ttl time.Duration) bool {
	if now < s.soonest || now-s.swept < int64(ttl/16) {
		return len(s.expires) < s.max
	}
	s.swept = now
	s.soonest = math.MaxInt64
	for d, expiry := range s.expires {
		if expiry <= now {
			delete(s.expires, d)
		} else {
			s.soonest = min(s.soonest, expiry)
		}
	}
	return len(s.expires) < s.max
}
