package ratelimit

import (
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// FuzzDecision: whatever bytes come back where the script's reply belongs
// (another program's key, a proxy in the way, a server of another
// version), decision and capped return an error or Decisions within their
// Limits' bounds, and never panic.
func FuzzDecision(f *testing.F) {
	f.Add(pack(1, 3), int64(1))
	f.Add(pack(0, -0.5), int64(0))
	f.Add(pack(1, math.Inf(1)), int64(1))
	f.Add("short", int64(1))
	f.Add(pack(1, 3)+"x", int64(2))
	f.Add(pack(1, 3)+pack(1, 2), int64(1))
	f.Add(pack(0, 0)+pack(0, 0.5), int64(1))
	fast := Limit{Count: 5_000_000_000, Period: time.Second, Burst: 100}
	f.Fuzz(func(t *testing.T, b string, n int64) {
		for _, l := range []Limit{perHour10, fast} {
			cmd := redis.NewCmd(t.Context())
			cmd.SetVal(b)
			before := time.Now()
			d, err := decision(l, int(n), cmd)
			if err != nil {
				continue
			}
			if d.Remaining < 0 || d.Remaining > l.Capacity() || d.Limit != l.Count {
				t.Fatalf("reply %x: got %+v, out of %+v's bounds", b, d, l)
			}
			if d.Reset.Before(before) || d.RetryAfter < 0 || (d.Allowed && d.RetryAfter != 0) {
				t.Fatalf("reply %x: got %+v, want Reset from now on and RetryAfter only when denied", b, d)
			}
		}
		cmd := redis.NewCmd(t.Context())
		cmd.SetVal(b)
		c, err := capped(perHour10, fast, cmd)
		if err != nil {
			return
		}
		if c.Bucket.Remaining < 0 || c.Bucket.Remaining > perHour10.Capacity() || c.Cap.Remaining < 0 || c.Cap.Remaining > fast.Capacity() {
			t.Fatalf("reply %x: got %+v, out of bounds", b, c)
		}
		if c.Bucket == (Decision{}) && c.Cap.Allowed {
			t.Fatalf("reply %x: got %+v: a cap that granted, and the bucket untouched", b, c)
		}
	})
}
