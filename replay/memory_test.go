package replay

import (
	"errors"
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
	testStore(t, func(t *testing.T, maxEntries int) harness {
		clock := newFakeClock()
		return harness{
			store:   NewMemory(MemoryOptions{MaxEntries: maxEntries, Clock: clock.Now}),
			advance: clock.Advance,
		}
	})
}

func TestMemoryShardSizes(t *testing.T) {
	for _, tt := range []struct {
		maxEntries, shards int
	}{
		{0, 64}, {1, 1}, {8, 1}, {2047, 1}, {2048, 2}, {5000, 4}, {65536, 64}, {1_000_000, 64},
	} {
		t.Run(fmt.Sprintf("ok/%d entries", tt.maxEntries), func(t *testing.T) {
			m := NewMemory(MemoryOptions{MaxEntries: tt.maxEntries})
			if got := len(m.shards); got != tt.shards {
				t.Errorf("shards: got %d, want %d", got, tt.shards)
			}
			want := tt.maxEntries
			if want == 0 {
				want = DefaultMaxEntries
			}
			total := 0
			for i := range m.shards {
				total += m.shards[i].max
			}
			if total != want {
				t.Errorf("capacity: got %d, want %d", total, want)
			}
		})
	}
}

func TestMemoryExpiry(t *testing.T) {
	claim := func(t *testing.T, m *Memory, key string, ttl time.Duration) error {
		t.Helper()
		return m.Claim(t.Context(), key, ttl)
	}
	t.Run("ok/expired keys are swept on insert", func(t *testing.T) {
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{MaxEntries: 1000, Clock: clock.Now})
		for i := range 8 {
			if err := claim(t, m, fmt.Sprint("old", i), time.Second); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(time.Second)
		if err := claim(t, m, "new", time.Second); err != nil {
			t.Fatal(err)
		}
		// The insert sampled all eight old keys (sweepOnInsert is 8), all expired.
		if got := m.Len(); got != 1 {
			t.Errorf("Len: got %d, want 1", got)
		}
	})
	t.Run("ok/expired keys do not pile up", func(t *testing.T) {
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{MaxEntries: 100_000, Clock: clock.Now})
		for i := range 50_000 {
			if err := claim(t, m, fmt.Sprint(i), time.Second); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Millisecond) // 1000 live keys at any time
		}
		if got := m.Len(); got > 2000 {
			t.Errorf("Len: got %d, want <= 2000", got)
		}
	})
	t.Run("ok/many more keys than MaxEntries never grow past it", func(t *testing.T) {
		clock := newFakeClock()
		const maxEntries = 5000
		m := NewMemory(MemoryOptions{MaxEntries: maxEntries, Clock: clock.Now})
		claimed, full := 0, 0
		for i := range 60_000 {
			switch err := claim(t, m, fmt.Sprint(i), time.Second); {
			case err == nil:
				claimed++
			case errors.Is(err, ErrFull):
				full++
			default:
				t.Fatalf("Claim: %v", err)
			}
			clock.Advance(100 * time.Microsecond) // 10000 live keys wanted, twice the room
		}
		if got := m.Len(); got > maxEntries {
			t.Errorf("Len: got %d, want <= %d", got, maxEntries)
		}
		if claimed < 4*maxEntries || full == 0 {
			t.Errorf("got %d claimed and %d full, want at least %d claimed and some full", claimed, full, 4*maxEntries)
		}
	})
	t.Run("ok/an expired key not yet swept can be claimed", func(t *testing.T) {
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{MaxEntries: 1, Clock: clock.Now})
		if err := claim(t, m, "a", time.Second); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		if err := claim(t, m, "a", time.Second); err != nil {
			t.Errorf("Claim(a) after expiry in a full store: got %v, want nil", err)
		}
		if err := claim(t, m, "b", time.Second); !errors.Is(err, ErrFull) {
			t.Errorf("Claim(b): got %v, want ErrFull", err)
		}
	})
	t.Run("ok/a huge ttl saturates", func(t *testing.T) {
		m := NewMemory(MemoryOptions{Clock: newFakeClock().Now})
		if err := claim(t, m, "a", time.Duration(1<<63-1)); err != nil {
			t.Fatal(err)
		}
		if err := claim(t, m, "a", time.Second); !errors.Is(err, ErrReplayed) {
			t.Errorf("Claim(a) again: got %v, want ErrReplayed", err)
		}
	})
}

// TestShardSweepAll checks that a shard at capacity is scanned whole only
// once an entry can have expired, and at most once per ttl/16.
func TestShardSweepAll(t *testing.T) {
	m := NewMemory(MemoryOptions{MaxEntries: 4})
	s := &m.shards[0]
	add := func(expiry int64) {
		s.expires[digest{byte(len(s.expires)), byte(expiry)}] = expiry
		s.soonest = min(s.soonest, expiry)
	}
	for _, expiry := range []int64{100, 200, 300, 400} {
		add(expiry)
	}
	for i, tt := range []struct {
		add  int64 // an entry inserted before the sweep, if not 0
		now  int64
		ttl  time.Duration
		room bool
		left int
	}{
		{now: 50, ttl: 16, room: false, left: 4},               // nothing expired yet
		{now: 150, ttl: 16, room: true, left: 3},               // 100 expired
		{add: 1000, now: 250, ttl: 3200, room: false, left: 4}, // 200 expired, but the last sweep was less than ttl/16 ago
		{now: 350, ttl: 3200, room: true, left: 2},             // 200 and 300 expired, ttl/16 since the last sweep
		{add: 1000, now: 360, ttl: 16, room: true, left: 3},    // room without a sweep
		{add: 2000, now: 370, ttl: 16, room: false, left: 4},   // full, and nothing expires before 400
	} {
		if tt.add != 0 {
			add(tt.add)
		}
		if got := s.sweepAll(tt.now, tt.ttl); got != tt.room {
			t.Errorf("step %d: sweepAll(%d, %d): got room %v, want %v", i, tt.now, tt.ttl, got, tt.room)
		}
		if got := len(s.expires); got != tt.left {
			t.Errorf("step %d: entries left: got %d, want %d", i, got, tt.left)
		}
	}
}
