package auth

import (
	"encoding/binary"
	"sync"
	"time"
)

const cacheShards = 32

// sumCache holds values by the SHA-256 of a token, each until its own
// deadline: verified principals until the token's exp (so a client that
// sends one token a thousand times pays for one signature check), and
// introspection answers until their TTL. It holds at most max entries: a
// full shard first drops expired entries, then an arbitrary one.
//
// Safe for concurrent use; build it with newSumCache. A nil *sumCache
// caches nothing.
type sumCache[V any] struct {
	shards   [cacheShards]sumShard[V]
	perShard int
}

type sumShard[V any] struct {
	mu sync.RWMutex
	m  map[[32]byte]cached[V]
}

type cached[V any] struct {
	v     V
	until time.Time
}

func newSumCache[V any](max int) *sumCache[V] {
	c := &sumCache[V]{perShard: max / cacheShards}
	if c.perShard < 1 {
		c.perShard = 1
	}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]cached[V])
	}
	return c
}

func (c *sumCache[V]) shard(sum [32]byte) *sumShard[V] {
	return &c.shards[binary.LittleEndian.Uint32(sum[:4])%cacheShards]
}

// get returns the value for sum if it is cached and its deadline is after
// now.
func (c *sumCache[V]) get(sum [32]byte, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	s := c.shard(sum)
	s.mu.RLock()
	e, ok := s.m[sum]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return zero, false
	}
	return e.v, true
}

// put caches v for sum until the deadline.
func (c *sumCache[V]) put(sum [32]byte, v V, until, now time.Time) {
	if c == nil || !now.Before(until) {
		return
	}
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[sum]; !ok && len(s.m) >= c.perShard {
		for k, e := range s.m {
			if !now.Before(e.until) {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < c.perShard {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[sum] = cached[V]{v, until}
}

func (c *sumCache[V]) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
