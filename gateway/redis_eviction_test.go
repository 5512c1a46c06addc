package gateway

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/replay/redistest"
)

// evictionWarning is how the gateway's warning of a Redis that may evict
// its keys begins.
const evictionWarning = "Redis may evict dpopgate's keys"

// TestRedisEvictionWarning: the first /readyz that reaches Redis reads its
// memory settings (INFO memory), and a server that may evict keys (a
// maxmemory and a policy other than noeviction: every key of dpopgate's
// has an expiry, so the volatile-* policies evict them too) is named in
// one warning, since an evicted claim lets its proof be replayed. On a
// Cluster, every master is read; under a Sentinel, the primary.
func TestRedisEvictionWarning(t *testing.T) {
	for _, tc := range []struct {
		name, maxmemory, policy string
		warn                    bool
	}{
		{"no maxmemory", "0", "noeviction", false},
		{"noeviction", "100mb", "noeviction", false},
		{"allkeys-lru without maxmemory", "0", "allkeys-lru", false},
		{"allkeys-lru", "100mb", "allkeys-lru", true},
		{"volatile-ttl", "100mb", "volatile-ttl", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer admin.Close()
			if err := admin.ConfigSet(t.Context(), "maxmemory", tc.maxmemory).Err(); err != nil {
				t.Fatal(err)
			}
			if err := admin.ConfigSet(t.Context(), "maxmemory-policy", tc.policy).Err(); err != nil {
				t.Fatal(err)
			}
			e := newRedisEnv(t, oneServer(srv), "fail_closed", "fail_closed")
			wantWorking(t, e, "on "+tc.name) // the issuer's keys loaded, for /readyz
			for range 2 {
				if status, check := readyz(t, e); status != 200 || check != "ok" {
					t.Fatalf("readyz: got %d, redis check %q, want 200, ok", status, check)
				}
			}
			logs := e.logs.String()
			want := 0
			if tc.warn {
				want = 1
			}
			if n := strings.Count(logs, evictionWarning); n != want {
				t.Fatalf("%d warnings, want %d:\n%s", n, want, logs)
			}
			if tc.warn && (!strings.Contains(logs, srv.Addr()) || !strings.Contains(logs, tc.policy)) {
				t.Fatalf("the warning does not name %s and %s:\n%s", srv.Addr(), tc.policy, logs)
			}
		})
	}
	t.Run("INFO refused", func(t *testing.T) {
		// A user without +info: said once, and nothing else fails.
		srv := redistest.Start(t)
		admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer admin.Close()
		for _, args := range [][]any{{"config", "set", "maxmemory", "100mb"}, {"config", "set", "maxmemory-policy", "allkeys-lru"},
			{"acl", "setuser", "gate", "reset", "on", ">pw", "~dpopgate:*", "+evalsha", "+eval", "+set", "+get", "+del", "+time", "+ping"}} {
			if err := admin.Do(t.Context(), args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		e := newRedisEnv(t, oneServer(srv)+"  username: gate\n  password: pw\n", "fail_closed", "fail_closed")
		wantWorking(t, e, "as a user without +info")
		if status, check := readyz(t, e); status != 200 || check != "ok" {
			t.Fatalf("readyz: got %d, redis check %q, want 200, ok", status, check)
		}
		logs := e.logs.String()
		if n := strings.Count(logs, "INFO memory refused"); n != 1 || strings.Contains(logs, evictionWarning) {
			t.Fatalf("%d notes of the refusal, want 1, and no warning:\n%s", n, logs)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		s := redistest.StartSentinel(t)
		admin := redis.NewClient(&redis.Options{Addr: s.Primary.Addr()})
		defer admin.Close()
		for _, kv := range [][2]string{{"maxmemory", "100mb"}, {"maxmemory-policy", "allkeys-random"}} {
			if err := admin.ConfigSet(t.Context(), kv[0], kv[1]).Err(); err != nil {
				t.Fatal(err)
			}
		}
		e := newRedisEnv(t, "  mode: sentinel\n  master_name: "+s.MasterName+"\n  addrs: ["+s.Sentinel.Addr()+"]\n", "fail_closed", "fail_closed")
		wantWorking(t, e, "under a Sentinel")
		logs := e.logs.String()
		if n := strings.Count(logs, evictionWarning); n != 1 || !strings.Contains(logs, "the primary "+s.MasterName+" (Sentinel)") {
			t.Fatalf("%d warnings, want 1 naming the primary %s:\n%s", n, s.MasterName, logs)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t)
		evicting := cl.Addrs()[1]
		admin := redis.NewClient(&redis.Options{Addr: evicting})
		defer admin.Close()
		for _, kv := range [][2]string{{"maxmemory", "100mb"}, {"maxmemory-policy", "allkeys-lfu"}} {
			if err := admin.ConfigSet(t.Context(), kv[0], kv[1]).Err(); err != nil {
				t.Fatal(err)
			}
		}
		e := newRedisEnv(t, "  mode: cluster\n  addrs: ["+strings.Join(cl.Addrs(), ", ")+"]\n", "fail_closed", "fail_closed")
		wantWorking(t, e, "on a Cluster")
		logs := e.logs.String()
		if n := strings.Count(logs, evictionWarning); n != 1 || !strings.Contains(logs, evicting) {
			t.Fatalf("%d warnings, want 1 naming %s:\n%s", n, evicting, logs)
		}
	})
}
