package gateway

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestIssuerOutageLater: with keys loaded, the issuer's server stops; the
// scheduled refresh fails and is logged and counted, cached keys keep
// serving, the retry backs off, and the keys refresh once the server is
// started again.
func TestIssuerOutageLater(t *testing.T) {
	e := newEnv(t, "")
	tok := e.token(nil)
	if res := e.do(e.dpop(e.req("GET", "/tools/x"), tok)); res.status != 200 {
		t.Fatalf("got %d", res.status)
	}
	e.iss.Stop()
	v := e.gw.snap.Load().verifier
	e.clock.Advance(16 * time.Minute) // past refresh_interval (15m)
	v.RefreshDue(context.Background(), e.clock.Now())
	if !strings.Contains(e.logs.String(), "JWKS fetch failed; keys already loaded, if any, keep serving; retrying with backoff") {
		t.Fatalf("the failed refresh was not logged:\n%s", e.logs.String())
	}
	got := scrape(t, e.gw.AdminHandler())
	if got[`dpopgate_jwks_fetches_total{issuer="`+e.iss.URL+`",result="error"}`] != 1 {
		t.Fatalf("the failed refresh was not counted: %v", got)
	}
	// Cached keys keep serving (a fresh token: no token-cache help).
	fresh := e.token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	if res := e.do(e.dpop(e.req("GET", "/tools/x"), fresh)); res.status != 200 {
		t.Fatalf("issuer down, keys cached: got %d %s, want 200", res.status, res.body)
	}
	// Backoff: no retry before min_refresh_interval (5s) has passed.
	e.clock.Advance(time.Second)
	v.RefreshDue(context.Background(), e.clock.Now())
	if got := scrape(t, e.gw.AdminHandler())[`dpopgate_jwks_fetches_total{issuer="`+e.iss.URL+`",result="error"}`]; got != 1 {
		t.Fatalf("got %v failed fetches after 1s more, want 1: backoff", got)
	}
	e.iss.Restart(t)
	e.clock.Advance(5 * time.Second)
	v.RefreshDue(context.Background(), e.clock.Now())
	got = scrape(t, e.gw.AdminHandler())
	if got[`dpopgate_jwks_fetches_total{issuer="`+e.iss.URL+`",result="ok"}`] != 2 {
		t.Fatalf("the retry after the backoff did not succeed: %v", got)
	}
}
