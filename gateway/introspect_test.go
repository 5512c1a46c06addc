package gateway

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/devauth"
	"github.com/dpopgate/dpopgate/gateway/dpopclient"
	"github.com/dpopgate/dpopgate/gateway/internal/authtest"
)

// devIssuer is the development authorization server on httptest, with a
// count of introspection calls.
type devIssuer struct {
	*httptest.Server
	introspections atomic.Int32
}

func newDevIssuer(t *testing.T, audience string) *devIssuer {
	d := &devIssuer{Server: httptest.NewUnstartedServer(nil)}
	as, err := devauth.New(devauth.Options{
		Issuer: "http://" + d.Listener.Addr().String(), Audience: audience,
		Clients: []devauth.Client{
			{ID: "opaque-agent", Secret: "opaque-secret", Scope: "tools:call", Opaque: true, Tier: "business"},
			{ID: "jwt-agent", Secret: "jwt-secret", Scope: "tools:call"},
			{ID: "gateway", Secret: "gateway-secret"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/introspect" {
			d.introspections.Add(1)
		}
		as.ServeHTTP(w, r)
	})
	d.Start()
	t.Cleanup(d.Close)
	return d
}

// token gets a DPoP-bound token for a client, bound to key.
func (d *devIssuer) token(t *testing.T, client, secret string, key *dpopclient.Key) string {
	t.Helper()
	req, _ := http.NewRequest("POST", d.URL+"/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := (&http.Client{Transport: &dpopclient.Transport{Key: key}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	if tr.AccessToken == "" {
		t.Fatalf("no token for %s: %d", client, resp.StatusCode)
	}
	return tr.AccessToken
}

// stop shuts the server: connections are refused until restart.
func (d *devIssuer) stop() { d.Server.Close() }

// restart serves the same authorization server (same keys, same tokens)
// again on the same address.
func (d *devIssuer) restart(t *testing.T) {
	ln, err := net.Listen("tcp", strings.TrimPrefix(d.URL, "http://"))
	if err != nil {
		t.Fatalf("restarting the issuer: %v", err)
	}
	h := d.Config.Handler
	d.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	d.Server.Start()
}

func (d *devIssuer) revoke(t *testing.T, client, secret, token string) {
	req, _ := http.NewRequest("POST", d.URL+"/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", err, resp)
	}
	resp.Body.Close()
}

// newIntrospectEnv is a gateway in front of an echo upstream whose issuer
// is the dev authorization server, introspecting with a 5s cache.
func newIntrospectEnv(t *testing.T) (*env, *devIssuer) {
	return newDevIssuerEnv(t, slog.LevelInfo, func(issuer, upstream, gateway string) string {
		return fmt.Sprintf(`
issuers:
  - issuer: %[1]s
    audiences: [%[3]s]
    algorithms: [ES256]
    introspection:
      client_id: gateway
      client_secret: gateway-secret
      cache_ttl: 5s
      negative_cache_ttl: 2s
rate_limits:
  tiers:
    business: {rate: 3000/m}
routes:
  - name: jwt
    path_prefix: /jwt
    upstream: %[2]s
    auth: required
  - name: revocable
    path_prefix: /revocable
    upstream: %[2]s
    auth: required
    introspect: true
`, issuer, upstream, gateway)
	})
}

// newDevIssuerEnv is a gateway whose issuer is the dev authorization
// server, on the config conf writes for that issuer, the echo upstream and
// the gateway's own URL, logging at level into e.logs.
func newDevIssuerEnv(t *testing.T, level slog.Level, conf func(issuer, upstream, gateway string) string) (*env, *devIssuer) {
	e := &env{t: t, up: newUpstream(t), key: authtest.NewKey(t), logs: &logBuffer{}}
	e.srv = httptest.NewUnstartedServer(nil)
	gwURL := "http://" + e.srv.Listener.Addr().String()
	d := newDevIssuer(t, gwURL)
	cfg, err := config.Parse("introspect.yaml", []byte(conf(d.URL, e.up.URL, gwURL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	e.clock = &fakeClock{now: time.Now()}
	h := slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: level})
	if e.gw, err = New(cfg, Options{Clock: e.clock.Now, Logger: slog.New(h)}); err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = e.gw
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e, d
}

func TestOpaqueTokenEndToEnd(t *testing.T) {
	e, d := newIntrospectEnv(t)
	tok := d.token(t, "opaque-agent", "opaque-secret", e.key)
	if !strings.HasPrefix(tok, "opq_") {
		t.Fatalf("got token %q, want an opaque one", tok[:10])
	}
	res := e.do(e.dpop(e.req("GET", "/jwt/x"), tok))
	h := res.echo.Header
	if res.status != 200 || h.Get("X-Auth-Client-Id") != "opaque-agent" || h.Get("X-Auth-Jkt") != e.key.Thumbprint() ||
		h.Get("X-Auth-Tier") != "business" || h.Get("X-Auth-Scope") != "tools:call" {
		t.Fatalf("got %d %s / upstream %q, want 200 with the introspected identity", res.status, res.body, h)
	}
	// A proof from another key is refused: the answer's cnf.jkt binds it.
	other := authtest.NewKey(t)
	res = e.do(e.dpopWith(e.req("GET", "/jwt/x"), tok, other))
	if res.status != 401 || res.err.Error != "invalid_dpop_proof" {
		t.Fatalf("other key: got %d %s, want 401 invalid_dpop_proof", res.status, res.body)
	}
}

// TestRevokedToken: a revoked JWT is refused on the introspect: true route
// within one cache TTL, and still works on the JWT-only route until exp.
func TestRevokedToken(t *testing.T) {
	e, d := newIntrospectEnv(t)
	tok := d.token(t, "jwt-agent", "jwt-secret", e.key)
	for _, path := range []string{"/revocable/x", "/jwt/x"} {
		if res := e.do(e.dpop(e.req("GET", path), tok)); res.status != 200 {
			t.Fatalf("%s before revocation: got %d %s", path, res.status, res.body)
		}
	}
	d.revoke(t, "jwt-agent", "jwt-secret", tok)
	e.clock.Advance(5 * time.Second) // one cache TTL
	res := e.do(e.dpop(e.req("GET", "/revocable/x"), tok))
	if res.status != 401 || res.err.Error != "invalid_token" {
		t.Fatalf("revocable route after revocation: got %d %s, want 401 invalid_token", res.status, res.body)
	}
	if res := e.do(e.dpop(e.req("GET", "/jwt/x"), tok)); res.status != 200 {
		t.Fatalf("JWT-only route after revocation: got %d %s, want 200 until exp", res.status, res.body)
	}
}

// TestIntrospectionSingleFlight: 100 concurrent requests with one new
// token make one introspection call.
func TestIntrospectionSingleFlight(t *testing.T) {
	e, d := newIntrospectEnv(t)
	tok := d.token(t, "opaque-agent", "opaque-secret", e.key)
	var wg sync.WaitGroup
	var ok atomic.Int32
	start := make(chan struct{})
	reqs := make([]*http.Request, 100)
	for i := range reqs {
		reqs[i] = e.dpop(e.req("GET", "/jwt/x"), tok)
	}
	for _, r := range reqs {
		wg.Add(1)
		go func(r *http.Request) {
			defer wg.Done()
			<-start
			if res := e.do(r); res.status == 200 {
				ok.Add(1)
			}
		}(r)
	}
	close(start)
	wg.Wait()
	if ok.Load() != 100 || d.introspections.Load() != 1 {
		t.Fatalf("got %d answered 200 and %d introspection calls, want 100 and 1", ok.Load(), d.introspections.Load())
	}
}

// TestIntrospectionDown: with the authorization server stopped, a cached
// token keeps working and a new one gets 503, never a pass; once it is
// started again the new token works.
func TestIntrospectionDown(t *testing.T) {
	e, d := newIntrospectEnv(t)
	cached := d.token(t, "opaque-agent", "opaque-secret", e.key)
	fresh := d.token(t, "opaque-agent", "opaque-secret", e.key)
	if res := e.do(e.dpop(e.req("GET", "/jwt/x"), cached)); res.status != 200 {
		t.Fatalf("got %d", res.status)
	}
	d.stop()
	if res := e.do(e.dpop(e.req("GET", "/jwt/x"), cached)); res.status != 200 {
		t.Fatalf("cached token, endpoint down: got %d %s, want 200", res.status, res.body)
	}
	res := e.do(e.dpop(e.req("GET", "/jwt/x"), fresh))
	if res.status != 503 || res.err.Error != "temporarily_unavailable" {
		t.Fatalf("new token, endpoint down: got %d %s, want 503", res.status, res.body)
	}
	d.restart(t)
	if res := e.do(e.dpop(e.req("GET", "/jwt/x"), fresh)); res.status != 200 {
		t.Fatalf("endpoint back: got %d %s, want 200", res.status, res.body)
	}
}
