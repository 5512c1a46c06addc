package replay

import (
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// proofKeys returns n distinct keys shaped like the gateway's: the hex of a
// 128-bit hash of a key thumbprint and a jti.
func proofKeys(n int) []string {
	keys := make([]string, n)
	var b [16]byte
	for i := range keys {
		binary.BigEndian.PutUint64(b[:8], uint64(i)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint64(b[8:], uint64(i))
		keys[i] = hex.EncodeToString(b[:])
	}
	return keys
}

// TestMemoryFootprint measures the heap a million live keys cost. Run it
// with: go test -run Footprint -v ./replay/
func TestMemoryFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("claims a million keys")
	}
	const entries = 1_000_000
	keys := proofKeys(entries)
	before := heapAlloc()
	// Shards fill unevenly, so a store of exactly a million is full a
	// little before it holds a million; 5% headroom holds them all.
	m := NewMemory(MemoryOptions{MaxEntries: entries + entries/20, Clock: newFakeClock().Now})
	for _, k := range keys {
		if err := m.Claim(t.Context(), k, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	after := heapAlloc()
	if got := m.Len(); got != entries {
		t.Fatalf("Len: got %d, want %d", got, entries)
	}
	grown := int64(after) - int64(before)
	t.Logf("%d live keys: heap grew %.1f MB, %d bytes a key", entries, float64(grown)/1e6, grown/entries)
	if grown > 100e6 {
		t.Errorf("heap grew %.1f MB, want under 100 MB", float64(grown)/1e6)
	}
	runtime.KeepAlive(m)
	runtime.KeepAlive(keys)
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryClaim measures claiming keys never seen before, serially
// and in parallel, with a 100ms ttl so the store reaches a steady state of
// live and expired keys. realclock pays for time.Now (50ns or more on a VM
// with kvm-clock, and it does not scale across cores); stepclock advances a
// fake clock 1µs a claim.
func BenchmarkMemoryClaim(b *testing.B) {
	keys := proofKeys(1 << 20) // reused after a million claims, long expired by then
	const ttl = 100 * time.Millisecond
	base := newFakeClock().now
	for _, clock := range []struct {
		name string
		now  func() func() time.Time
	}{
		{"realclock", func() func() time.Time { return time.Now }},
		{"stepclock", func() func() time.Time {
			var step atomic.Int64
			return func() time.Time { return base.Add(time.Duration(step.Add(1000))) }
		}},
	} {
		newMemory := func() *Memory { return NewMemory(MemoryOptions{Clock: clock.now()}) }
		b.Run(clock.name+"/unique", func(b *testing.B) {
			m := newMemory()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := m.Claim(b.Context(), keys[i%len(keys)], ttl); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(clock.name+"/unique/parallel", func(b *testing.B) {
			m := newMemory()
			b.ReportAllocs()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// Claims of one key from two goroutines could race
					// within the ttl; a shared counter keeps keys unique.
					if err := m.Claim(b.Context(), keys[int(next.Add(1))%len(keys)], ttl); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
