package gateway

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay"
	"github.com/dpopgate/dpopgate/replay/redistest"
)

// newBenchBackends are both backends on the Redis at addr, with the client
// options the config makes (200ms timeout, no retries).
func newBenchBackends(tb testing.TB, addr string) *redisBackends {
	tb.Helper()
	return newTestBackends(tb, addr, 200*time.Millisecond)
}

// newTestBackends are both backends on the Redis at addr, with the client
// options the config makes for redis.timeout timeout.
func newTestBackends(tb testing.TB, addr string, timeout time.Duration) *redisBackends {
	tb.Helper()
	o, err := config.Redis{URL: "redis://" + addr, Timeout: config.Duration(timeout)}.UniversalOptions()
	if err != nil {
		tb.Fatal(err)
	}
	return newBackendsOn(tb, o, timeout)
}

// newBackendsOn are both backends on a client made as the gateway makes
// it from o, with the prefix "bench:", for a redis.timeout of timeout.
func newBackendsOn(tb testing.TB, o *redis.UniversalOptions, timeout time.Duration) *redisBackends {
	tb.Helper()
	c := newRedisClient(o)
	tb.Cleanup(func() { c.Close() })
	b := &redisBackends{
		client:  c,
		timeout: timeout,
		replay:  replay.NewRedis(c, "bench:"),
		limits:  ratelimit.NewRedis(c, "bench:"),
		metrics: newMetrics(&Gateway{}),
	}
	b.batch = newRedisBatch(b)
	tb.Cleanup(b.batch.close)
	return b
}

// BenchmarkRedisRoundTrip measures, against a local redis-server, one
// replay claim, one rate-limit decision, one under a cap (an anonymous
// request under anonymous_ip_cap), and a claim and a decision pipelined as
// the gateway sends them for a DPoP request. Each iteration also times a bare SET NX
// round trip on the same client, right before the operation, so that both
// see the same machine: bare-ns/op and op-ns/op are those two times, and
// x-bare is their ratio (the target: 1.2 or less, one round trip). ns/op
// counts both. set-us/call and script-us/call are the server's own time
// for each SET (the bare one, and the claim's) and each script run, from
// INFO commandstats. empty-script is the floor of any Lua decision: EVALSHA of a
// script that only returns, what Redis's scripting costs before the
// script does anything. time-get-set-script is the floor of any token
// bucket on Redis's clock: a script that runs TIME, GET and SET ... PX on
// one key with constant values and does no arithmetic.
// decision-limiter-alone is the decision's ratelimit.Redis call without
// the gateway's part (its batching, deadline and metrics). Run it with:
//
//	go test -run '^$' -bench RedisRoundTrip -count 5 ./gateway/
func BenchmarkRedisRoundTrip(b *testing.B) {
	srv := redistest.Start(b)
	be := newBenchBackends(b, srv.Addr())
	ctx := context.Background()
	// A bucket no run empties, so that every decision is granted and
	// written, the common case, with an expiry of seconds to minutes, as
	// a tier's has (a bucket that refills in a year is written another
	// way; see redis.lua).
	l := ratelimit.Limit{Count: 1000, Period: time.Second, Burst: 1 << 30}
	if _, err := be.AllowN(ctx, "warm", l, 1); err != nil { // loads the script
		b.Fatal(err)
	}
	empty := redis.NewScript("return 1")
	floor := redis.NewScript(`redis.call("TIME") redis.call("GET", KEYS[1]) ` +
		`redis.call("SET", KEYS[1], "0123456789abcdef0123456789abcdef", "PX", "60000") return 1`)
	for _, s := range []*redis.Script{empty, floor} {
		if err := s.Load(ctx, be.client).Err(); err != nil {
			b.Fatal(err)
		}
	}
	run := 0
	for _, op := range []struct {
		name string
		do   func(key string) error
	}{
		{"bare-SET-NX", func(key string) error {
			return be.client.Do(ctx, "set", key, "1", "nx", "px", 60000).Err()
		}},
		{"empty-script", func(key string) error {
			return empty.EvalSha(ctx, be.client, []string{key}).Err()
		}},
		{"time-get-set-script", func(key string) error {
			return floor.EvalSha(ctx, be.client, []string{"floor"}).Err()
		}},
		{"claim", func(key string) error {
			return be.Claim(ctx, key, time.Minute)
		}},
		{"decision", func(key string) error {
			_, err := be.AllowN(ctx, "route|client|iss|agent", l, 1)
			return err
		}},
		{"decision-limiter-alone", func(key string) error {
			_, err := be.limits.AllowN(ctx, "route|client|iss|agent", l, 1)
			return err
		}},
		{"decision-under-cap", func(key string) error {
			_, err := be.AllowCapped(ctx, "route|anonymous|ip:192.0.2.1", l, "ipcap|192.0.2.1", l)
			return err
		}},
		{"claim+decision-pipelined", func(key string) error {
			a := be.claimAllowN(ctx, key, time.Minute, "route|client|iss|agent", l, 1)
			if a.claimErr != nil {
				return a.claimErr
			}
			return a.limitErr
		}},
	} {
		b.Run(op.name, func(b *testing.B) {
			run++
			prefix := strconv.Itoa(run) + ":" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
			var bareNs, opNs time.Duration
			if err := be.client.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				key := prefix + strconv.Itoa(i)
				t0 := time.Now()
				if err := be.client.Do(ctx, "set", "bare:"+key, "1", "nx", "px", 60000).Err(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := op.do(key); err != nil {
					b.Fatal(err)
				}
				bareNs += t1.Sub(t0)
				opNs += time.Since(t1)
			}
			b.ReportMetric(float64(bareNs.Nanoseconds())/float64(b.N), "bare-ns/op")
			b.ReportMetric(float64(opNs.Nanoseconds())/float64(b.N), "op-ns/op")
			b.ReportMetric(float64(opNs)/float64(bareNs), "x-bare")
			// What the server spent on each call, by its own clock.
			info, err := be.client.Info(ctx, "commandstats").Result()
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range []struct{ cmd, unit string }{{"set", "set-us/call"}, {"evalsha", "script-us/call"}} {
				if us, ok := usecPerCall(info, c.cmd); ok {
					b.ReportMetric(us, c.unit)
				}
			}
		})
	}
}

// usecPerCall is the usec_per_call of cmd in an INFO commandstats reply,
// and whether cmd was called.
func usecPerCall(info, cmd string) (float64, bool) {
	for _, line := range strings.Split(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "usec_per_call="); ok {
				us, err := strconv.ParseFloat(v, 64)
				return us, err == nil
			}
		}
	}
	return 0, false
}

// BenchmarkRedisInterleaved runs the time-get-set-script floor, the
// limiter's decision alone and the gateway's decision in turn in every
// iteration, each right after a bare SET NX, so that the three see the
// same moments of the machine and can be read against each other:
// x-floor, x-limiter and x-gateway are each one's time over the bare
// round trips'. (BenchmarkRedisRoundTrip's rows run one after another,
// and the machine's state moves between them.) Run it with:
//
//	go test -run '^$' -bench RedisInterleaved -benchtime 10000x -count 5 ./gateway/
func BenchmarkRedisInterleaved(b *testing.B) {
	srv := redistest.Start(b)
	be := newBenchBackends(b, srv.Addr())
	ctx := context.Background()
	l := ratelimit.Limit{Count: 1000, Period: time.Second, Burst: 1 << 30}
	floor := redis.NewScript(`redis.call("TIME") redis.call("GET", KEYS[1]) ` +
		`redis.call("SET", KEYS[1], "0123456789abcdef0123456789abcdef", "PX", "60000") return 1`)
	ops := []struct {
		unit string
		do   func() error
	}{
		{"x-floor", func() error { return floor.Run(ctx, be.client, []string{"floor"}).Err() }},
		{"x-limiter", func() error {
			_, err := be.limits.AllowN(ctx, "limiter", l, 1)
			return err
		}},
		{"x-gateway", func() error {
			_, err := be.AllowN(ctx, "gateway", l, 1)
			return err
		}},
	}
	for _, op := range ops { // loads the scripts
		if err := op.do(); err != nil {
			b.Fatal(err)
		}
	}
	prefix := "bare:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	var bare time.Duration
	spent := make([]time.Duration, len(ops))
	i := 0
	for b.Loop() {
		for j, op := range ops {
			i++
			t0 := time.Now()
			if err := be.client.Do(ctx, "set", prefix+strconv.Itoa(i), "1", "nx", "px", 60000).Err(); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := op.do(); err != nil {
				b.Fatal(err)
			}
			bare += t1.Sub(t0)
			spent[j] += time.Since(t1)
		}
	}
	for j, op := range ops {
		b.ReportMetric(float64(spent[j])*float64(len(ops))/float64(bare), op.unit)
	}
}
