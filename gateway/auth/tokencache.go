package auth

import (
	"encoding/binary"
	"sync"
	"time"
)

const tokenCacheShards = 32

// tokenCache holds verified principals by the SHA-256 of their token, so a
// client that sends one token a thousand times pays for one signature check.
// Entries never outlive the token's exp. It holds at most max entries: a
// shard that is full first drops expired entries, then an arbitrary one.
//
// Safe for concurrent use; the zero value is not usable (newTokenCache).
type tokenCache struct {
	shards   [tokenCacheShards]tokenShard
	perShard int
}

type tokenShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*Principal
}

func newTokenCache(max int) *tokenCache {
	c := &tokenCache{perShard: max / tokenCacheShards}
	if c.perShard < 1 {
		c.perShard = 1
	}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*Principal)
	}
	return c
}

func (c *tokenCache) shard(sum [32]byte) *tokenShard {
	return &c.shards[binary.LittleEndian.Uint32(sum[:4])%tokenCacheShards]
}

// get returns the cached principal for a token, or nil when there is none
// or its token has expired at now.
func (c *tokenCache) get(sum [32]byte, now time.Time) *Principal {
	if c == nil {
		return nil
	}
	s := c.shard(sum)
	s.mu.RLock()
	p := s.m[sum]
	s.mu.RUnlock()
	if p == nil || !now.Before(p.Expiry) {
		return nil
	}
	return p
}

func (c *tokenCache) put(sum [32]byte, p *Principal, now time.Time) {
	if c == nil {
		return
	}
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		for k, q := range s.m {
			if !now.Before(q.Expiry) {
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
	s.m[sum] = p
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
