package ratelimit

import (
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryFootprint measures the heap a million IPv4 keys cost. Run it
// with: go test -run Footprint -v ./ratelimit/
func TestMemoryFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a million buckets")
	}
	const keys = 1_000_000
	ips := make([]string, keys)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
	}
	clock := newFakeClock()
	before := heapAlloc()
	// Shards fill unevenly, so a store of exactly a million starts evicting
	// a little before it holds a million; 5% headroom holds them all.
	m := NewMemory(MemoryOptions{MaxKeys: keys + keys/20, Clock: clock.Now})
	for _, ip := range ips {
		if _, err := m.AllowN(t.Context(), ip, perMinute60, 1); err != nil {
			t.Fatal(err)
		}
	}
	after := heapAlloc()
	if got := m.Len(); got != keys {
		t.Fatalf("Len: got %d, want %d", got, keys)
	}
	grown := int64(after) - int64(before)
	t.Logf("%d keys: heap grew %.1f MB, %d bytes a key", keys, float64(grown)/1e6, grown/keys)
	if grown > 200e6 {
		t.Errorf("heap grew %.1f MB, want under 200 MB", float64(grown)/1e6)
	}
	runtime.KeepAlive(m)
	runtime.KeepAlive(ips)
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryAllowN measures one decision on a hot key and on keys
// spread over 100k buckets, serially and in parallel. The fixedclock
// variants take time.Now out of the measurement: on a VM with kvm-clock it
// costs 50ns or more and does not scale across cores.
func BenchmarkMemoryAllowN(b *testing.B) {
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
	}
	// A bucket no benchmark empties and that never refills to full (full
	// buckets get dropped), so every call finds its bucket and is allowed.
	l := Limit{Count: 1, Period: time.Hour, Burst: 1 << 30}
	fixed := newFakeClock().now
	for _, clock := range []struct {
		name string
		now  func() time.Time
	}{
		{"realclock", time.Now},
		{"fixedclock", func() time.Time { return fixed }},
	} {
		newMemory := func() *Memory { return NewMemory(MemoryOptions{Clock: clock.now}) }
		b.Run(clock.name+"/hot", func(b *testing.B) {
			m := newMemory()
			b.ReportAllocs()
			for b.Loop() {
				m.AllowN(b.Context(), "10.0.0.1", l, 1)
			}
		})
		b.Run(clock.name+"/spread100k", func(b *testing.B) {
			m := newMemory()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.AllowN(b.Context(), keys[i%len(keys)], l, 1)
				i++
			}
		})
		b.Run(clock.name+"/hot/parallel", func(b *testing.B) {
			m := newMemory()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m.AllowN(b.Context(), "10.0.0.1", l, 1)
				}
			})
		})
		b.Run(clock.name+"/spread100k/parallel", func(b *testing.B) {
			m := newMemory()
			b.ReportAllocs()
			var start atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(start.Add(7919))
				for pb.Next() {
					m.AllowN(b.Context(), keys[i%len(keys)], l, 1)
					i++
				}
			})
		})
	}
}
