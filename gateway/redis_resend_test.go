package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay"
	"github.com/dpopgate/dpopgate/replay/redistest"
)

// busyScript keeps a Redis server busy for ARGV[1] microseconds: commands
// sent meanwhile queue up in their sockets, to be read, in the order they
// came, when it ends.
const busyScript = `local t0 = redis.call("TIME")
local start = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
while true do
	local t = redis.call("TIME")
	if tonumber(t[1]) * 1000000 + tonumber(t[2]) - start > tonumber(ARGV[1]) then break end
end
return 1`

// loseReply runs call while the Redis node at addr executes its command
// and then drops the connection before the reply goes out: the node is
// kept busy, call's command queues up behind the busy script, and a CLIENT
// KILL queued after it is read in the same turn of the event loop, after
// the command has run and before its reply is written.
func loseReply(t *testing.T, addr string, call func()) {
	t.Helper()
	ctx := context.Background()
	blocker := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer blocker.Close()
	killer := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer killer.Close()
	if err := killer.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		blocker.Eval(ctx, busyScript, nil, 400000) // killed along with the others: no reply
	}()
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		call()
	}()
	time.Sleep(100 * time.Millisecond)
	if err := killer.Do(ctx, "client", "kill", "type", "normal", "skipme", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	<-done
	<-busy
}

// TestRedisClusterNoResend: on a Redis Cluster, a claim or a decision
// that Redis executed but whose reply was lost (a connection reset) is
// an error, as on one server, not sent again: a second SET NX of the same
// key would answer "already used" to the proof's first and only use, and
// a second script would take a second token.
func TestRedisClusterNoResend(t *testing.T) {
	cl := redistest.StartCluster(t)
	e := newRedisEnv(t, "  mode: cluster\n  addrs: ["+strings.Join(cl.Addrs(), ", ")+"]\n  timeout: 2s\n", "fail_closed", "fail_closed")
	b := e.gw.redis
	ctx := t.Context()
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer admin.Close()
	nodeOf := func(key string) *redis.Client {
		t.Helper()
		n, err := admin.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Connections to every master, and the slot map, in place.
	for i := range 30 {
		if err := b.Claim(ctx, fmt.Sprintf("warm%d", i), time.Minute); err != nil {
			t.Fatal(err)
		}
		// The script cached on every master, so that EVALSHA runs it, and
		// pipeline connections too.
		if _, err := b.AllowN(ctx, fmt.Sprintf("warm%d", i), ratelimit.Limit{Count: 1, Period: time.Second}, 1); err != nil {
			t.Fatal(err)
		}
		if a := b.claimAllowN(ctx, fmt.Sprintf("warmpiped%d", i), time.Minute, "warm", ratelimit.Limit{Count: 1000, Period: time.Second}, 1); a.claimErr != nil || a.limitErr != nil {
			t.Fatal(a.claimErr, a.limitErr)
		}
	}

	t.Run("claim", func(t *testing.T) {
		for i := range 5 {
			key := fmt.Sprintf("proof%d", i)
			node := nodeOf("dpopgate:replay:{" + key + "}")
			var err error
			loseReply(t, node.Options().Addr, func() { err = b.Claim(ctx, key, time.Minute) })
			set := node.Exists(ctx, "dpopgate:replay:{"+key+"}").Val() == 1
			t.Logf("attempt %d: claim error %v, key set %v", i, err, set)
			if !set || err == nil {
				continue // the kill came first: nothing to judge
			}
			if errors.Is(err, replay.ErrReplayed) {
				t.Fatalf("a claim whose reply was lost was sent again, and answered %v, want the connection's error", err)
			}
			return
		}
		t.Skip("never lost a reply after the SET ran")
	})

	t.Run("pipeline", func(t *testing.T) {
		l := ratelimit.Limit{Count: 100, Period: time.Hour}
		for i := range 5 {
			key := fmt.Sprintf("piped%d", i)
			node := nodeOf("dpopgate:replay:{" + key + "}")
			var a admission
			loseReply(t, node.Options().Addr, func() { a = b.claimAllowN(ctx, key, time.Minute, key, l, 1) })
			set := node.Exists(ctx, "dpopgate:replay:{"+key+"}").Val() == 1
			t.Logf("attempt %d: claim error %v, key set %v", i, a.claimErr, set)
			if !set || a.claimErr == nil {
				continue
			}
			if errors.Is(a.claimErr, replay.ErrReplayed) {
				t.Fatalf("a pipelined claim whose reply was lost was sent again, and answered %v, want the connection's error", a.claimErr)
			}
			return
		}
		t.Skip("never lost a reply after the SET ran")
	})

	t.Run("decision", func(t *testing.T) {
		l := ratelimit.Limit{Count: 100, Period: time.Hour}
		for i := range 3 {
			key := fmt.Sprintf("client%d", i)
			full := "dpopgate:bucket:{" + key + "}"
			node := nodeOf(full)
			var err error
			loseReply(t, node.Options().Addr, func() { _, err = b.AllowN(ctx, key, l, 1) })
			d, derr := b.AllowN(ctx, key, l, 0)
			if derr != nil {
				t.Fatal(derr)
			}
			t.Logf("attempt %d: decision error %v, %d left", i, err, d.Remaining)
			if d.Remaining < 99 {
				t.Fatalf("a decision whose reply was lost: %d tokens left, want 99 or 100 (one taken at most once)", d.Remaining)
			}
		}
	})
}
