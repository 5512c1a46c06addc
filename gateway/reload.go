package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/dpopgate/dpopgate/config"
)

// Reload swaps in a new, validated config. Requests in flight finish on the
// config they started with; new ones use the new one. The keys of issuers
// whose settings did not change, and every rate-limit bucket and replay
// entry, carry over. Settings only a restart can change (listeners, TLS,
// backends) make Reload fail, and then the running config keeps serving.
func (g *Gateway) Reload(cfg *config.Config) error {
	old := g.snap.Load()
	if err := restartOnly(old.cfg, cfg); err != nil {
		return err
	}
	s, err := g.compile(cfg, old.verifier)
	if err != nil {
		return err
	}
	g.snap.Store(s)
	if g.redis != nil {
		g.redis.reload(cfg)
	}
	// The old routes' transports take no new requests: let their idle
	// connections go (busy ones finish first).
	for _, rt := range old.routes {
		if t, ok := rt.proxy.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	}
	return nil
}

// restartOnly reports the settings that differ between two configs and
// that a running gateway cannot change.
func restartOnly(old, next *config.Config) error {
	var errs []error
	for _, f := range []struct {
		key        string
		was, comes any
	}{
		{"server.listen", old.Server.Listen, next.Server.Listen},
		{"server.admin_listen", old.Server.AdminListen, next.Server.AdminListen},
		{"server.tls", old.Server.TLS, next.Server.TLS},
		{"replay.backend", old.Replay.Backend, next.Replay.Backend},
		{"replay.max_entries", old.Replay.MaxEntries, next.Replay.MaxEntries},
		{"rate_limits.backend", old.RateLimits.Backend, next.RateLimits.Backend},
		{"rate_limits.max_keys", old.RateLimits.MaxKeys, next.RateLimits.MaxKeys},
		{"redis", old.Redis, next.Redis},
	} {
		if !reflect.DeepEqual(f.was, f.comes) {
			errs = append(errs, fmt.Errorf("%s: changing it needs a restart", f.key))
		}
	}
	return errors.Join(errs...)
}
