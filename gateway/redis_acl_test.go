package gateway

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/replay/redistest"
)

// readmeACL is the README's ACL SETUSER lines for dpopgate's Redis user,
// as the arguments after ACL SETUSER, with the password placeholder
// replaced by password: first the one every server takes, then the one
// for Redis 7.2 and later.
func readmeACL(t *testing.T, password string) [][]any {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]any
	for _, line := range strings.Split(string(readme), "\n") {
		rest, ok := strings.CutPrefix(line, "redis-cli ACL SETUSER ")
		if !ok {
			continue
		}
		rest, _, _ = strings.Cut(rest, "#")
		args := []any{"acl", "setuser"}
		for _, f := range strings.Fields(rest) {
			f = strings.Trim(f, "'")
			if f == ">CHANGE-ME" {
				f = ">" + password
			}
			args = append(args, f)
		}
		lines = append(lines, args)
	}
	if len(lines) != 2 {
		t.Fatalf("the README has %d ACL SETUSER lines, want 2", len(lines))
	}
	return lines
}

// TestRedisLeastPrivilege: the gateway works on a Redis user made with the
// README's ACL lines, on one server, on a Cluster and on the servers
// under a Sentinel: DPoP requests (a
// claim and a decision pipelined), a replayed proof, anonymous requests
// under anonymous_ip_cap (the capped script), /readyz, and the script sent
// again with EVAL after SCRIPT FLUSH; and Redis refused none of it
// (ACL LOG is empty). The user can do nothing else: other keys, other
// commands are refused.
func TestRedisLeastPrivilege(t *testing.T) {
	const password = "acl-test-password"
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t)
	sn := redistest.StartSentinel(t)
	for _, tc := range []struct {
		name  string
		redis string // the body of the redis section, without credentials
		addrs []string
	}{
		{"server", "  url: " + srv.URL() + "\n", []string{srv.Addr()}},
		{"cluster", "  mode: cluster\n  addrs: [" + strings.Join(cl.Addrs(), ", ") + "]\n", cl.Addrs()},
		{"sentinel", "  mode: sentinel\n  master_name: " + sn.MasterName + "\n  addrs: [" + sn.Sentinel.Addr() + "]\n",
			[]string{sn.Primary.Addr(), sn.Replica.Addr()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var admins []*redis.Client // the default user, on each node
			for _, addr := range tc.addrs {
				a := redis.NewClient(&redis.Options{Addr: addr})
				t.Cleanup(func() { a.Close() })
				admins = append(admins, a)
				// A user that was there before, with other rights and
				// another password: the lines replace both.
				if err := a.Do(ctx, "acl", "setuser", "dpopgate", "on", ">old-password", "~*", "+@all").Err(); err != nil {
					t.Fatal(err)
				}
				for i, args := range readmeACL(t, password) {
					err := a.Do(ctx, args...).Err()
					if i == 1 && err != nil && strings.Contains(err.Error(), "client|setinfo") {
						continue // Redis 7.0: no such command, as the README says
					}
					if err != nil {
						t.Fatalf("ACL SETUSER %v: %v", args[2:], err)
					}
				}
				if err := a.Do(ctx, "acl", "log", "reset").Err(); err != nil {
					t.Fatal(err)
				}
			}
			rateLimits := "  backend: redis\n  on_error: fail_closed\n  auth_failures: {rate: 100/m}\n  anonymous_ip_cap: {rate: 100/m}"
			extra := "server:\n  public_url: " + publicURL + "\nreplay:\n  backend: redis\nredis:\n" + tc.redis +
				"  username: dpopgate\n  password: " + password + "\n"
			e := newEnvWith(t, rateLimits, extra)
			tok := e.token(nil)
			requests := func(when string) {
				t.Helper()
				for i := range 2 { // the anonymous tier is 5/m
					r := e.signed("/tools/x", tok)
					if res := e.do(r); res.status != 200 {
						t.Fatalf("%s, DPoP request %d: got %d %s, want 200", when, i, res.status, res.body)
					}
					if res := e.do(e.resend(r)); !isReplayed(res) {
						t.Fatalf("%s, replayed proof %d: got %d %s, want 401 already used", when, i, res.status, res.body)
					}
					if res := e.do(e.req("GET", "/public/x")); res.status != 200 || res.header.Get("X-RateLimit-Remaining") == "" {
						t.Fatalf("%s, anonymous request %d: got %d %s (X-RateLimit-Remaining %q), want 200 with a decision",
							when, i, res.status, res.body, res.header.Get("X-RateLimit-Remaining"))
					}
				}
			}
			requests("first")
			if status, check := readyz(t, e); status != 200 || check != "ok" {
				t.Fatalf("readyz: got %d, redis check %q, want 200, ok", status, check)
			}
			for _, a := range admins {
				if err := a.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			requests("after SCRIPT FLUSH")
			for _, a := range admins {
				log, err := a.Do(ctx, "acl", "log").Slice()
				if err != nil {
					t.Fatal(err)
				}
				if len(log) != 0 {
					t.Errorf("%s: Redis refused the gateway's user: %v", a.Options().Addr, log)
				}
			}
			// As that user, not as default (which takes any password
			// when it has none).
			if list := admins[0].ClientList(ctx).Val(); !strings.Contains(list, " user=dpopgate ") {
				t.Errorf("%s: no connection as dpopgate: %s", tc.addrs[0], list)
			}

			// Nothing else: not the old password, no other key, no other
			// command.
			old := redis.NewClient(&redis.Options{Addr: tc.addrs[0], Username: "dpopgate", Password: "old-password"})
			defer old.Close()
			if err := old.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Errorf("the old password: got %v, want WRONGPASS", err)
			}
			u := redis.NewClient(&redis.Options{Addr: tc.addrs[0], Username: "dpopgate", Password: password})
			defer u.Close()
			for _, args := range [][]any{
				{"get", "other-app:session"},
				{"set", "other-app:session", "x"},
				{"keys", "*"},
				{"flushall"},
				{"config", "get", "maxmemory"},
				{"script", "flush"},
				{"eval", `return redis.call("GET", KEYS[1])`, 1, "other-app:session"},
			} {
				if err := u.Do(ctx, args...).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
					t.Errorf("%v as dpopgate: got %v, want NOPERM", args, err)
				}
			}
		})
	}
}
