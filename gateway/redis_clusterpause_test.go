package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay/redistest"
)

// TestRedisClusterUnresponsive: a Cluster master that stops answering
// costs a call at most about redis.timeout, as one server does.
func TestRedisClusterUnresponsive(t *testing.T) {
	cl := redistest.StartCluster(t)
	const timeout = 300 * time.Millisecond
	e := newRedisEnv(t, "  mode: cluster\n  addrs: ["+strings.Join(cl.Addrs(), ", ")+"]\n  timeout: 300ms\n", "fail_closed", "fail_closed")
	b := e.gw.redis
	ctx := t.Context()
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer admin.Close()
	l := ratelimit.Limit{Count: 100, Period: time.Hour}
	for i := range 30 {
		if a := b.claimAllowN(ctx, fmt.Sprintf("warm%d", i), time.Minute, fmt.Sprintf("warm%d", i), l, 1); a.claimErr != nil || a.limitErr != nil {
			t.Fatal(a.claimErr, a.limitErr)
		}
	}
	paused := cl.Servers[0]
	var keys []string
	for i := 0; len(keys) < 4; i++ {
		k := fmt.Sprintf("k%d", i)
		n, err := admin.MasterForKey(ctx, "dpopgate:replay:{"+k+"}")
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr == paused.Addr() {
			keys = append(keys, k)
		}
	}
	paused.Pause()
	defer paused.Resume()
	var slowest time.Duration
	for _, k := range keys {
		for _, call := range []func() error{
			func() error { return b.Claim(ctx, k, time.Minute) },
			func() error { _, err := b.AllowN(ctx, k, l, 1); return err },
			func() error { return b.claimAllowN(ctx, k, time.Minute, k, l, 1).claimErr },
		} {
			start := time.Now()
			err := call()
			d := time.Since(start)
			t.Logf("%v: %v", d, err)
			if err == nil {
				t.Errorf("a call to a paused master succeeded")
			}
			slowest = max(slowest, d)
		}
	}
	if slowest > timeout+timeout/3 {
		t.Errorf("slowest call to a paused master: %v, want about redis.timeout (%v) at most", slowest, timeout)
	}
}
