package gateway

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/config"
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

// lossyDialer dials Redis for real and, once armed with a marker, loses
// one reply: the first connection that then writes the marker (a key of
// the command) waits for Redis's reply, which Redis sends only once it
// has run the command, and instead of handing it on closes the
// connection and fails the read as a reset connection does. A command
// whose outcome is unknown to the client, though Redis ran it, every
// time, whatever Redis or Valkey does while a script is busy.
type lossyDialer struct {
	mu     sync.Mutex
	marker []byte // nil when not armed
	lost   int    // replies lost so far
}

// arm makes the next command that names marker lose its reply.
func (d *lossyDialer) arm(marker string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.marker = []byte(marker)
}

// lostReplies is how many replies d has lost.
func (d *lossyDialer) lostReplies() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost
}

func (d *lossyDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, d: d}, nil
}

// takes reports whether the write p carries the armed marker, and
// disarms d if so.
func (d *lossyDialer) takes(p []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.marker == nil || !bytes.Contains(p, d.marker) {
		return false
	}
	d.marker = nil
	d.lost++
	return true
}

type lossyConn struct {
	net.Conn
	d    *lossyDialer
	lose atomic.Bool // the next reply is lost
}

func (c *lossyConn) Write(p []byte) (int, error) {
	if c.d.takes(p) {
		c.lose.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *lossyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.lose.Load() {
		c.Conn.Close()
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: c.RemoteAddr(), Err: syscall.ECONNRESET}
	}
	return n, err
}

// TestRedisNoResend: a claim or a decision that Redis ran but whose reply
// was lost (a connection reset) is an error, not sent again, on one
// server and on a Cluster: a second SET NX of the same key would answer
// "already used" to the proof's first and only use, and a second script
// would take a second token. (go-redis's ClusterClient sends a command
// again after such a failure, up to MaxRedirects times, unless the
// noResend hook stops it.)
func TestRedisNoResend(t *testing.T) {
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t)
	for _, tc := range []struct {
		name string
		rc   config.Redis
	}{
		{"server", config.Redis{URL: srv.URL()}},
		{"cluster", config.Redis{Mode: "cluster", Addrs: cl.Addrs()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rc.Timeout = config.Duration(2 * time.Second)
			o, err := tc.rc.UniversalOptions()
			if err != nil {
				t.Fatal(err)
			}
			d := &lossyDialer{}
			o.Dialer = d.dial
			b := newBackendsOn(t, o, time.Duration(tc.rc.Timeout))
			ctx := t.Context()
			l := ratelimit.Limit{Count: 100, Period: time.Hour}
			// The script cached on every node (a ClusterClient loads it
			// on every master), so that EVALSHA runs it, and the slot map
			// loaded.
			script, err := os.ReadFile("../ratelimit/redis.lua")
			if err != nil {
				t.Fatal(err)
			}
			if err := b.client.ScriptLoad(ctx, string(script)).Err(); err != nil {
				t.Fatal(err)
			}
			if err := b.Claim(ctx, "warm", time.Minute); err != nil {
				t.Fatal(err)
			}
			// claimed checks that the claim of key ran once, and failed
			// with the connection's error.
			claimed := func(t *testing.T, key string, err error) {
				t.Helper()
				if errors.Is(err, replay.ErrReplayed) {
					t.Fatalf("a claim whose reply was lost was sent again, and answered %v, want the connection's error", err)
				}
				if !outcomeUnknown(err) {
					t.Fatalf("claim error %v, want the lost reply's connection error", err)
				}
				if n := b.client.Exists(ctx, "bench:replay:{"+key+"}").Val(); n != 1 {
					t.Fatalf("the claim's key exists %d times, want 1: Redis ran it", n)
				}
			}
			// tookOne checks that the bucket key has had one token
			// taken, once.
			tookOne := func(t *testing.T, key string) {
				t.Helper()
				dc, err := b.AllowN(ctx, key, l, 0)
				if err != nil {
					t.Fatal(err)
				}
				if dc.Remaining != l.Count-1 {
					t.Fatalf("%d tokens left, want %d (one taken, once)", dc.Remaining, l.Count-1)
				}
			}
			t.Run("claim", func(t *testing.T) {
				d.arm("lost-claim")
				claimed(t, "lost-claim", b.Claim(ctx, "lost-claim", time.Minute))
			})
			t.Run("decision", func(t *testing.T) {
				d.arm("lost-decision")
				if _, err := b.AllowN(ctx, "lost-decision", l, 1); !outcomeUnknown(err) {
					t.Fatalf("decision error %v, want the lost reply's connection error", err)
				}
				tookOne(t, "lost-decision")
			})
			t.Run("pipeline", func(t *testing.T) {
				// The marker is the claim's. On one server the decision's
				// reply is lost with it; on a Cluster too when both keys
				// are on one node.
				d.arm("lost-piped-claim")
				a := b.claimAllowN(ctx, "lost-piped-claim", time.Minute, "piped-bucket", l, 1)
				claimed(t, "lost-piped-claim", a.claimErr)
				if a.limitErr == nil && a.decision.Remaining != l.Count-1 {
					t.Fatalf("the pipelined decision left %d tokens, want %d", a.decision.Remaining, l.Count-1)
				}
				tookOne(t, "piped-bucket")
			})
			if n := d.lostReplies(); n != 3 {
				t.Fatalf("%d replies lost, want 3: a command did not name its marker", n)
			}
		})
	}
}
