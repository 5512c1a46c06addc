package ratelimit

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/replay/redistest"
	"github.com/redis/go-redis/v9"
)

// redisHarness runs the conformance suite on c, each case under a prefix
// of its own. Redis keeps time itself, so the harness sleeps: the suite
// advances by tens of milliseconds at most (times scale for the
// millisecond-refill case), and slack absorbs how much longer than asked a
// sleep and a round trip take on a busy machine.
func redisHarness(c redis.UniversalClient) func(t *testing.T) harness {
	var cases atomic.Int64
	return func(t *testing.T) harness {
		return harness{
			limiter: NewRedis(c, fmt.Sprintf("case%d:", cases.Add(1))),
			now:     time.Now,
			advance: time.Sleep,
			slack:   100 * time.Millisecond,
			scale:   25,
		}
	}
}

func newRedisClient(t *testing.T) (*redistest.Server, *redis.Client) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func TestRedisConformance(t *testing.T) {
	_, c := newRedisClient(t)
	testLimiter(t, redisHarness(c))
}

func TestRedisClusterConformance(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	// The suite's slack is for sleeps, not for the client's first contact
	// with each node, its first COMMAND (key positions) or a first EVALSHA
	// answered NOSCRIPT: make those now.
	err := c.ForEachShard(t.Context(), func(ctx context.Context, shard *redis.Client) error {
		return bucketScript.Load(ctx, shard).Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRedis(c, "warmup:").AllowN(t.Context(), "k", perHour10, 1); err != nil {
		t.Fatal(err)
	}
	testLimiter(t, redisHarness(c))
}

// TestRedisMatchesMemory: the same random calls, limit changes included,
// give Memory and Redis the same Decisions. The limits refill a token in
// minutes, so the milliseconds Redis's clock moves meanwhile cannot change
// a whole-token count.
//
// Both backends forget a bucket that is full at its limit (a missing
// bucket is a full one), Memory when a sweep comes across it, Redis at
// once. Only a later, larger burst can tell the difference (a forgotten
// bucket starts full at the new burst, a kept one keeps its tokens), so
// the limit of a key changes only while its bucket is not full.
func TestRedisMatchesMemory(t *testing.T) {
	_, c := newRedisClient(t)
	r := NewRedis(c, "diff:")
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Clock: clock.Now})
	limits := []Limit{perHour10, perHour5, burst100, burst2, {Count: 3, Period: time.Hour, Burst: 7}}
	rng := rand.New(rand.NewPCG(1, 2))
	type keyState struct {
		limit Limit
		full  bool
	}
	keys := map[string]*keyState{}
	changes := 0
	for i := range 600 {
		key := fmt.Sprint("k", rng.IntN(3))
		ks := keys[key]
		if ks == nil {
			ks = &keyState{limit: limits[rng.IntN(len(limits))], full: true}
			keys[key] = ks
		}
		if !ks.full && rng.IntN(5) == 0 {
			ks.limit = limits[rng.IntN(len(limits))]
			changes++
		}
		l := ks.limit
		n := rng.IntN(13) - 1
		what := fmt.Sprintf("call %d: AllowN(%s, %+v, %d)", i, key, l, n)
		want, err := m.AllowN(t.Context(), key, l, n)
		if err != nil {
			t.Fatal(err)
		}
		ks.full = !want.Reset.After(clock.Now())
		now := time.Now()
		got, err := r.AllowN(t.Context(), key, l, n)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got.Allowed != want.Allowed || got.Limit != want.Limit || got.Remaining != want.Remaining {
			t.Fatalf("%s: got %+v, want %+v", what, got, want)
		}
		// Redis's clock runs during the test, so its buckets refill a
		// little between calls, at up to 100 tokens an hour, and a call
		// with a smaller Limit reads that as more time: allow 0.05 token
		// (whole-token counts above are exact).
		tolerance := time.Duration(0.05 / l.PerSecond() * float64(time.Second))
		if d := got.Reset.Sub(now) - want.Reset.Sub(clock.Now()); d < -tolerance || d > tolerance {
			t.Fatalf("%s: Reset: got now+%v, want now+%v", what, got.Reset.Sub(now), want.Reset.Sub(clock.Now()))
		}
		if d := got.RetryAfter - want.RetryAfter; d < -tolerance || d > tolerance {
			t.Fatalf("%s: RetryAfter: got %v, want %v", what, got.RetryAfter, want.RetryAfter)
		}
	}
	t.Logf("600 calls, %d limit changes", changes)
}

// TestRedisBucketStorage: a bucket is 32 bytes under a hash-tagged key
// (its tokens, the server's time, rate and burst, as little-endian
// float64s) that expires when the bucket would be full again; looking, and
// being denied, write nothing.
func TestRedisBucketStorage(t *testing.T) {
	_, c := newRedisClient(t)
	ctx := t.Context()
	r := NewRedis(c, "dg:")
	key := "dg:bucket:{route|client|iss|agent}"
	allow := func(l Limit, n int) Decision {
		t.Helper()
		d, err := r.AllowN(ctx, "route|client|iss|agent", l, n)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	exists := func() bool {
		t.Helper()
		n, err := c.Exists(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	allow(perMinute60, 0)
	allow(perMinute60, 61)
	if exists() {
		t.Fatalf("after a peek and an oversized take: the bucket exists, want none")
	}
	allow(perMinute60, 3)
	if !exists() {
		t.Fatalf("after a take: no bucket, want one")
	}
	// Three tokens at one a second: full again in 3s (less the time since
	// the take, which a slow machine can stretch).
	if pttl, err := c.PTTL(ctx, key).Result(); err != nil || pttl <= 2*time.Second || pttl > 3*time.Second {
		t.Errorf("PTTL after taking 3 of 60/m: got %v, %v, want just under 3s", pttl, err)
	}
	before, err := c.Get(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 32 {
		t.Fatalf("bucket: got %d bytes, want 32", len(before))
	}
	field := func(i int) float64 {
		return math.Float64frombits(binary.LittleEndian.Uint64([]byte(before[8*i:])))
	}
	serverTime, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if tokens := field(0); tokens != 57 {
		t.Errorf("bucket tokens: got %v, want 57", tokens)
	}
	if last := time.UnixMicro(int64(field(1))); last.After(serverTime) || serverTime.Sub(last) > time.Second {
		t.Errorf("bucket time: got %v, want just before the server's %v", last, serverTime)
	}
	if rate, burst := field(2), field(3); rate != 1 || burst != 60 {
		t.Errorf("bucket rate and burst: got %v, %v, want 1, 60", rate, burst)
	}
	allow(perMinute60, 0)
	allow(perMinute60, 100)
	if after, _ := c.Get(ctx, key).Result(); after != before {
		t.Errorf("a peek and a denied take changed the bucket: got %x, was %x", after, before)
	}
	// A new, smaller burst that the bucket already holds makes it full:
	// it is deleted.
	allow(Limit{Count: 60, Period: time.Minute, Burst: 2}, 0)
	if exists() {
		t.Errorf("a bucket capped to full by a new burst: still stored, want deleted")
	}
}

// TestRedisBucketExpiry: a bucket expires when it would be full again,
// to the millisecond, whichever way the script writes the number: as a C
// long (under 2^31 ms), as a float past it, and at the cap of 10^15 ms.
func TestRedisBucketExpiry(t *testing.T) {
	_, c := newRedisClient(t)
	ctx := t.Context()
	r := NewRedis(c, "dg:")
	const day = 24 * time.Hour
	for _, tt := range []struct {
		name   string
		l      Limit
		n      int
		wantMs int64
	}{
		{"3 of 60/m", perMinute60, 3, 3_000},
		{"2^31-1 ms", Limit{Count: 1, Period: (1<<31 - 1) * time.Millisecond, Burst: 2}, 1, 1<<31 - 1},
		{"2^31 ms", Limit{Count: 1, Period: (1 << 31) * time.Millisecond, Burst: 2}, 1, 1 << 31},
		{"30 days", Limit{Count: 1, Period: 30 * day, Burst: 3}, 2, 60 * 86_400_000},
		{"capped at 10^15 ms", Limit{Count: 1, Period: 290 * 365 * day, Burst: 1000}, 1000, 1e15},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if d, err := r.AllowN(ctx, tt.name, tt.l, tt.n); err != nil || !d.Allowed {
				t.Fatalf("take %d: got %+v, %v, want allowed", tt.n, d, err)
			}
			// PTTL in ms as Redis says it: 10^15 ms overflows a Duration.
			ms, err := c.Do(ctx, "pttl", "dg:bucket:{"+tt.name+"}").Int64()
			if err != nil || ms > tt.wantMs || ms < tt.wantMs-2_000 {
				t.Errorf("PTTL: got %d ms, %v, want just under %d", ms, err, tt.wantMs)
			}
		})
	}
}

// TestRedisCappedAtomic: under a cap, the look at the cap, the bucket's
// take and the cap's run as one, so that no call takes a bucket's token
// and is then refused by the cap (as Memory's three steps can be, when
// calls race), and both buckets sit in one Cluster slot under one hash tag.
func TestRedisCappedAtomic(t *testing.T) {
	_, c := newRedisClient(t)
	ctx := t.Context()
	r := NewRedis(c, "dg:")
	var wg sync.WaitGroup
	var granted, refusedByCap atomic.Int64
	for range 64 {
		wg.Go(func() {
			got, err := r.AllowCapped(ctx, "b", burst100, "cap", perHour10)
			switch {
			case err != nil:
				t.Error(err)
			case got.Bucket.Allowed && got.Cap.Allowed:
				granted.Add(1)
			case got.Bucket.Allowed:
				t.Errorf("a bucket's token taken for a call the cap refused: %+v", got)
			default:
				refusedByCap.Add(1)
			}
		})
	}
	wg.Wait()
	if granted.Load() != 10 || refusedByCap.Load() != 54 {
		t.Errorf("got %d granted and %d refused by the cap, want 10 and 54", granted.Load(), refusedByCap.Load())
	}
	state, err := c.Get(ctx, "dg:bucket:{cap}b").Result()
	if err != nil || len(state) != 32 {
		t.Fatalf("the bucket under its cap's hash tag: got %q, %v, want 32 bytes", state, err)
	}
	if tokens := math.Float64frombits(binary.LittleEndian.Uint64([]byte(state))); math.Floor(tokens) != 90 {
		t.Errorf("the bucket's tokens: got %v, want 90 (100 less the 10 granted)", tokens)
	}
	if n, err := c.Exists(ctx, "dg:bucket:{cap}").Result(); err != nil || n != 1 {
		t.Errorf("the cap: got %d, %v, want it stored", n, err)
	}
}

// TestRedisOneScriptCall: a decision is one EVALSHA, and nothing else.
func TestRedisOneScriptCall(t *testing.T) {
	_, c := newRedisClient(t)
	ctx := t.Context()
	r := NewRedis(c, "dg:")
	if _, err := r.AllowN(ctx, "warm", perHour10, 1); err != nil { // loads the script
		t.Fatal(err)
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AllowN(ctx, "k", perHour10, 1); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, line := range strings.Split(info, "\r\n") {
		if name, rest, ok := strings.Cut(line, ":calls="); ok && strings.HasPrefix(name, "cmdstat_") {
			n, _, _ := strings.Cut(rest, ",")
			calls = append(calls, strings.TrimPrefix(name, "cmdstat_")+"="+n)
		}
	}
	// Commands a script runs count too: time, get and set.
	want := "config|resetstat=1 evalsha=1 get=1 set=1 time=1"
	if got := strings.Join(sortedStrings(calls), " "); got != want {
		t.Errorf("commands for one decision: got %s, want %s", got, want)
	}
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestRedisAllowNIn: decisions queued on a pipeline go in one round trip,
// and survive the server losing its script cache.
func TestRedisAllowNIn(t *testing.T) {
	_, c := newRedisClient(t)
	ctx := t.Context()
	r := NewRedis(c, "dg:")
	withScriptFlushed(t, c, func(t *testing.T, flush bool) {
		key := fmt.Sprint("pipe", flush)
		p := c.Pipeline()
		first := r.AllowNIn(ctx, p, key, perHour10, 4)
		second := r.AllowNIn(ctx, p, key, perHour10, 7)
		unlimited := r.AllowNIn(ctx, p, key, Limit{}, 1)
		if got := p.Len(); got != 2 {
			t.Errorf("queued: got %d, want 2 (the unlimited Limit queues nothing)", got)
		}
		p.Exec(ctx)
		if d, err := first(); err != nil || !d.Allowed || d.Remaining != 6 {
			t.Errorf("first: got %+v, %v, want allowed with 6 left", d, err)
		}
		if d, err := second(); err != nil || d.Allowed || d.Remaining != 6 {
			t.Errorf("second: got %+v, %v, want denied with 6 left", d, err)
		}
		if d, err := unlimited(); err != nil || !d.Allowed {
			t.Errorf("unlimited: got %+v, %v, want allowed", d, err)
		}
	})
}

// withScriptFlushed runs test twice as subtests: with the script cached
// on c's server, and after SCRIPT FLUSH.
func withScriptFlushed(t *testing.T, c *redis.Client, test func(t *testing.T, flush bool)) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("ok/script flushed %v", flush), func(t *testing.T) {
			if flush {
				if err := c.ScriptFlush(t.Context()).Err(); err != nil {
					t.Fatal(err)
				}
			}
			test(t, flush)
		})
	}
}

// TestRedisAllowCappedIn: decisions under a cap queued on a pipeline go in
// one round trip, in order, and survive the server losing its script
// cache.
func TestRedisAllowCappedIn(t *testing.T) {
	_, c := newRedisClient(t)
	ctx := t.Context()
	r := NewRedis(c, "dg:")
	capL := Limit{Count: 2, Period: time.Hour}
	withScriptFlushed(t, c, func(t *testing.T, flush bool) {
		capKey := fmt.Sprint("cap", flush)
		p := c.Pipeline()
		var results []func() (Capped, error)
		for _, key := range []string{"a", "b", "a"} {
			results = append(results, r.AllowCappedIn(ctx, p, key, perHour10, capKey, capL))
		}
		if got := p.Len(); got != 3 {
			t.Errorf("queued: got %d, want 3", got)
		}
		p.Exec(ctx)
		for i, want := range []struct{ bucketLeft, capLeft int }{{9, 1}, {9, 0}, {-1, 0}} {
			got, err := results[i]()
			switch {
			case err != nil:
				t.Errorf("call %d: %v", i, err)
			case want.bucketLeft < 0 && (got.Cap.Allowed || got.Bucket != Decision{}):
				t.Errorf("call %d: got %+v, want refused by the cap, the bucket untouched", i, got)
			case want.bucketLeft >= 0 && (!got.Bucket.Allowed || !got.Cap.Allowed || got.Bucket.Remaining != want.bucketLeft || got.Cap.Remaining != want.capLeft):
				t.Errorf("call %d: got %+v, want granted with %d and %d left", i, got, want.bucketLeft, want.capLeft)
			}
		}
	})
}

// TestRedisErrors: Redis errors and replies of the wrong shape come back
// as errors, never as a Decision or a panic.
func TestRedisErrors(t *testing.T) {
	srv, c := newRedisClient(t)
	ctx := t.Context()
	r := NewRedis(c, "dg:")
	// What an older gateway, or someone else, left under a bucket's key.
	if err := c.Set(ctx, "dg:bucket:{short}", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, "dg:bucket:{hash}", "tokens", "3").Err(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"short", "hash"} {
		if d, err := r.AllowN(ctx, key, perHour10, 1); err == nil {
			t.Errorf("bucket key holding a %s: got %+v, want an error", key, d)
		}
	}
	for _, tt := range []struct {
		name  string
		reply any
	}{
		{"fail/not a string", []any{int64(1), pack(3)}},
		{"fail/an integer", int64(1)},
		{"fail/short", pack(1) + "xyz"},
		{"fail/long", pack(1, 3) + "x"},
		{"fail/allowed out of range", pack(2, 3)},
		{"fail/allowed not whole", pack(0.5, 3)},
		{"fail/allowed NaN", pack(math.NaN(), 3)},
		{"fail/tokens over the burst", pack(1, 11)},
		{"fail/tokens far below zero", pack(1, -2)},
		{"fail/tokens NaN", pack(1, math.NaN())},
		{"fail/tokens infinite", pack(1, math.Inf(-1))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := redis.NewCmd(ctx)
			cmd.SetVal(tt.reply)
			if d, err := decision(perHour10, 1, cmd); err == nil {
				t.Errorf("reply %#v: got %+v, want an error", tt.reply, d)
			}
		})
	}
	// A take may overdraw by up to a nanosecond's refill, which for a
	// limit of more than 10^9 a second is more than a token.
	fast := Limit{Count: 5_000_000_000, Period: time.Second, Burst: 100}
	cmd := redis.NewCmd(ctx)
	cmd.SetVal(pack(1, -4))
	if d, err := decision(fast, 4, cmd); err != nil || !d.Allowed || d.Remaining != 0 {
		t.Errorf("a take overdrawn by 4 at 5e9/s: got %+v, %v, want allowed, 0 remaining", d, err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if d, err := r.AllowN(ctx, "k", perHour10, 1); err == nil {
		t.Errorf("Redis down: got %+v, want an error", d)
	}
}
