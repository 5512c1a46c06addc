package gateway

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// upgrades are the upgraded connections (WebSockets) the gateway is
// proxying. http.Server.Shutdown does not wait for a connection once it is
// hijacked, so the gateway counts them itself, for WaitUpgrades.
type upgrades struct {
	n      atomic.Int64
	ctx    context.Context // ends when the ones left are to be closed
	cancel context.CancelFunc
}

func newUpgrades() *upgrades {
	u := &upgrades{}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	return u
}

// track counts r as an upgraded connection when it asks for an upgrade,
// and returns it with a context that WaitUpgrades ends when the grace
// period is over (the reverse proxy then closes both connections); done
// must be called when it is over.
func (u *upgrades) track(r *http.Request) (_ *http.Request, done func()) {
	if r.Header.Get("Upgrade") == "" || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return r, func() {}
	}
	u.n.Add(1)
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(u.ctx, cancel)
	return r.WithContext(ctx), func() {
		stop()
		cancel()
		u.n.Add(-1)
	}
}

// WaitUpgrades is the drain of upgraded connections (WebSockets), which
// http.Server.Shutdown leaves out: call it after Shutdown, with the same
// grace period. It returns once none is left, or, when ctx ends first,
// closes those left and returns ctx's error.
func (g *Gateway) WaitUpgrades(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for g.upgrades.n.Load() > 0 {
		select {
		case <-ctx.Done():
			g.upgrades.cancel()
			// The reverse proxy closes both sides as soon as it sees
			// its context end.
			for i := 0; i < 100 && g.upgrades.n.Load() > 0; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
