package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/replay/redistest"
	"github.com/redis/go-redis/v9"
)

// redisHarness runs the conformance suite on c, each case under a prefix
// of its own so that cases share one server without seeing each other's
// keys.
func redisHarness(c redis.UniversalClient) func(t *testing.T, maxEntries int) harness {
	var cases atomic.Int64
	return func(t *testing.T, maxEntries int) harness {
		if maxEntries != 0 {
			t.Skip("Redis bounds its memory with maxmemory, not a key count: it never answers ErrFull")
		}
		return harness{store: NewRedis(c, fmt.Sprintf("case%d:", cases.Add(1))), advance: time.Sleep, scale: 10}
	}
}

func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	testStore(t, redisHarness(c))
}

func TestRedisClusterConformance(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { c.Close() })
	testStore(t, redisHarness(c))
}

// TestRedisOneCommand: a claim is exactly one SET, under the documented
// key, with the ttl in milliseconds rounded up.
func TestRedisOneCommand(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	s := NewRedis(c, "dg:")
	var sent atomic.Pointer[string] // the last SET, as sent
	c.AddHook(argsHook(func(cmd redis.Cmder) {
		if cmd.Name() == "set" {
			line := strings.TrimSpace(fmt.Sprintln(cmd.Args()...))
			sent.Store(&line)
		}
	}))

	calls := func() map[string]string {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, line := range strings.Split(info, "\r\n") {
			if name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls="); ok && line != name {
				out[name], _, _ = strings.Cut(rest, ",")
			}
		}
		return out
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim(ctx, "jkt|jti", 1500*time.Microsecond); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	got := calls()
	if len(got) != 2 || got["set"] != "1" || got["config|resetstat"] != "1" {
		t.Errorf("commands after one claim: got %v, want set once (and the config resetstat)", got)
	}
	// 1.5ms rounds up to 2ms: the key is gone at 2ms, not before. (What
	// was sent, not the PTTL, which a slow machine may see expired.)
	if want := "set dg:replay:{jkt|jti} 1 nx px 2"; sent.Load() == nil || *sent.Load() != want {
		t.Errorf("the claim sent %v, want %q", sent.Load(), want)
	}

	if err := s.Claim(ctx, "long", time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "dg:replay:{long}").Result(); err != nil || v != "1" {
		t.Errorf("GET: got %q, %v, want \"1\"", v, err)
	}
	if pttl, err := c.PTTL(ctx, "dg:replay:{long}").Result(); err != nil || pttl <= 59*time.Second || pttl > time.Minute {
		t.Errorf("PTTL: got %v, %v, want about a minute", pttl, err)
	}
}

// argsHook calls seen with every command the client sends alone.
type argsHook func(redis.Cmder)

func (h argsHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h argsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h(cmd)
		return next(ctx, cmd)
	}
}

func (h argsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisClaimIn: claims queued on a pipeline go in one round trip and
// report as Claim does.
func TestRedisClaimIn(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	s := NewRedis(c, "dg:")
	if err := s.Claim(ctx, "used", time.Minute); err != nil {
		t.Fatal(err)
	}
	p := c.Pipeline()
	fresh := s.ClaimIn(ctx, p, "fresh", time.Minute)
	used := s.ClaimIn(ctx, p, "used", time.Minute)
	bad := s.ClaimIn(ctx, p, "bad", 0)
	if got := p.Len(); got != 2 {
		t.Errorf("queued: got %d commands, want 2 (a bad ttl queues nothing)", got)
	}
	p.Exec(ctx) // errors are read per claim
	if err := fresh(); err != nil {
		t.Errorf("fresh: got %v, want nil", err)
	}
	if err := used(); !errors.Is(err, ErrReplayed) {
		t.Errorf("used: got %v, want ErrReplayed", err)
	}
	if err := bad(); err == nil || errors.Is(err, ErrReplayed) {
		t.Errorf("bad ttl: got %v, want an error", err)
	}
}

// TestRedisDown: with the server gone, a claim fails within the caller's
// deadline with an error that is neither ErrReplayed nor ErrFull, and
// works again once the server is back.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	s := NewRedis(c, "dg:")
	if err := s.Claim(t.Context(), "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	err := s.Claim(t.Context(), "b", time.Minute)
	if err == nil || errors.Is(err, ErrReplayed) || errors.Is(err, ErrFull) {
		t.Fatalf("Claim with Redis down: got %v, want an error other than ErrReplayed and ErrFull", err)
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Claim(t.Context(), "b", time.Minute)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Claim after restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
