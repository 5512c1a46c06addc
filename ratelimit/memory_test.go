package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to; safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestMemoryConformance(t *testing.T) {
	testLimiter(t, func(t *testing.T) harness {
		clock := newFakeClock()
		return harness{
			limiter: NewMemory(MemoryOptions{Clock: clock.Now}),
			now:     clock.Now,
			advance: clock.Advance,
		}
	})
}

func TestMemoryZeroOptions(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	if got, want := len(m.shards), maxShards; got != want {
		t.Errorf("shards: got %d, want %d", got, want)
	}
	total := 0
	for i := range m.shards {
		total += m.shards[i].max
	}
	if total != DefaultMaxKeys {
		t.Errorf("capacity: got %d, want %d", total, DefaultMaxKeys)
	}
	d, err := m.AllowN(t.Context(), "k", perMinute60, 1)
	if err != nil || !d.Allowed || d.Remaining != 59 {
		t.Errorf("AllowN: got %+v, %v, want allowed with 59 remaining", d, err)
	}
}

func TestMemoryShardSizes(t *testing.T) {
	for _, tt := range []struct {
		maxKeys, shards int
	}{
		{1, 1}, {10, 1}, {2047, 1}, {2048, 2}, {5000, 4}, {65536, 64}, {100_000, 64}, {1_000_000, 64},
	} {
		t.Run(fmt.Sprintf("ok/%d keys", tt.maxKeys), func(t *testing.T) {
			m := NewMemory(MemoryOptions{MaxKeys: tt.maxKeys})
			if got := len(m.shards); got != tt.shards {
				t.Errorf("shards: got %d, want %d", got, tt.shards)
			}
			total := 0
			for i := range m.shards {
				total += m.shards[i].max
			}
			if total != tt.maxKeys {
				t.Errorf("capacity: got %d, want %d", total, tt.maxKeys)
			}
		})
	}
}

func TestMemoryPeekCreatesNoBucket(t *testing.T) {
	m := NewMemory(MemoryOptions{Clock: newFakeClock().Now})
	for _, n := range []int{0, -1, 11} {
		if _, err := m.AllowN(t.Context(), "k", perHour10, n); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Len(); got != 0 {
		t.Errorf("Len after peeks and oversized calls: got %d, want 0", got)
	}
}

func TestMemoryUnlimited(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	d, err := m.AllowN(t.Context(), "k", Limit{}, 1)
	if err != nil || !d.Allowed || d.RetryAfter != 0 {
		t.Errorf("AllowN(unlimited): got %+v, %v, want allowed", d, err)
	}
	if got := m.Len(); got != 0 {
		t.Errorf("Len: got %d, want 0", got)
	}
}

// TestMemoryEviction checks the bound: full buckets go first, then the least
// recently used, and the store never holds more than MaxKeys buckets.
func TestMemoryEviction(t *testing.T) {
	take := func(t *testing.T, m *Memory, key string, l Limit) Decision {
		t.Helper()
		d, err := m.AllowN(t.Context(), key, l, 1)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("ok/least recently used goes when none is full", func(t *testing.T) {
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{MaxKeys: 4, Clock: clock.Now})
		for _, k := range []string{"a", "b", "c", "d", "a"} {
			take(t, m, k, perHour10)
			clock.Advance(time.Millisecond)
		}
		// a is now the most recently used, b the least. (A shard of 4 is
		// sampled whole, so the approximate LRU is exact here.)
		take(t, m, "e", perHour10)
		if got := m.Len(); got != 4 {
			t.Errorf("Len: got %d, want 4", got)
		}
		if got := take(t, m, "a", perHour10).Remaining; got != 7 {
			t.Errorf("a kept its bucket: got remaining %d, want 7", got)
		}
		if got := take(t, m, "b", perHour10).Remaining; got != 9 {
			t.Errorf("b was evicted and starts afresh: got remaining %d, want 9", got)
		}
	})
	t.Run("ok/full buckets go before the least recently used", func(t *testing.T) {
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{MaxKeys: 4, Clock: clock.Now})
		take(t, m, "c", perHour10)
		clock.Advance(time.Millisecond)
		take(t, m, "fast", perMinute60) // full again a second later
		take(t, m, "d", perHour10)
		take(t, m, "a", perHour10)
		clock.Advance(time.Second)
		// fast is full, so it goes rather than c, the least recently used.
		take(t, m, "e", perHour10)
		if got := m.Len(); got != 4 {
			t.Errorf("Len: got %d, want 4", got)
		}
		for _, k := range []string{"c", "d", "a"} {
			if got := take(t, m, k, perHour10).Remaining; got != 8 {
				t.Errorf("%s kept its bucket: got remaining %d, want 8", k, got)
			}
		}
	})
	t.Run("ok/many more keys than MaxKeys never grow past it", func(t *testing.T) {
		clock := newFakeClock()
		const maxKeys = 5000
		m := NewMemory(MemoryOptions{MaxKeys: maxKeys, Clock: clock.Now})
		for i := range 60_000 {
			take(t, m, fmt.Sprint(i), perHour10)
			if i%5_000 == 0 {
				if got := m.Len(); got > maxKeys {
					t.Fatalf("after %d keys: Len: got %d, want <= %d", i+1, got, maxKeys)
				}
			}
		}
		if got := m.Len(); got > maxKeys {
			t.Errorf("Len: got %d, want <= %d", got, maxKeys)
		}
	})
	t.Run("ok/full buckets are swept on insert", func(t *testing.T) {
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{MaxKeys: 1000, Clock: clock.Now})
		for _, k := range []string{"a", "b", "c"} {
			take(t, m, k, perMinute60)
		}
		clock.Advance(time.Second) // a, b and c are full again
		take(t, m, "d", perMinute60)
		// d's insert sampled two buckets, both full, and dropped them.
		if got := m.Len(); got != 2 {
			t.Errorf("Len: got %d, want 2", got)
		}
	})
	t.Run("ok/full buckets do not pile up", func(t *testing.T) {
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{MaxKeys: 100_000, Clock: clock.Now})
		for i := range 50_000 {
			take(t, m, fmt.Sprint(i), perMinute60)
			clock.Advance(time.Millisecond) // 1000 new keys a second, each full a second later
		}
		// About 1000 buckets are not full at any time; sampling keeps the
		// full ones to a small multiple of that.
		if got := m.Len(); got > 5000 {
			t.Errorf("Len: got %d, want <= 5000", got)
		}
		t.Logf("Len: %d", m.Len())
	})
}
