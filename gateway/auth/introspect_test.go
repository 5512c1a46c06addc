package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// introspectionServer answers RFC 7662 requests from a table of tokens,
// checking the gateway's client authentication, and counts the calls.
type introspectionServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]map[string]any
	calls   atomic.Int32
	down    atomic.Bool
	pubKey  jwk.Key // when set, a private_key_jwt assertion is required
}

func newIntrospectionServer(t *testing.T) *introspectionServer {
	s := &introspectionServer{answers: map[string]map[string]any{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		r.ParseForm()
		if !s.authenticated(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		ans, ok := s.answers[r.PostForm.Get("token")]
		s.mu.Unlock()
		if !ok {
			ans = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *introspectionServer) authenticated(r *http.Request) bool {
	if s.pubKey == nil {
		id, secret, ok := r.BasicAuth()
		return ok && id == "gateway" && secret == "gw%2Fsecret" // form-encoded before Basic
	}
	if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return false
	}
	payload, err := jws.Verify([]byte(r.PostForm.Get("client_assertion")), jws.WithKey(jwa.ES256, s.pubKey))
	if err != nil {
		return false
	}
	var c map[string]any
	json.Unmarshal(payload, &c)
	return c["iss"] == "gateway" && c["sub"] == "gateway" && c["aud"] == s.URL
}

func (s *introspectionServer) set(token string, answer map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[token] = answer
}

// introspectingVerifier trusts ti, introspecting at srv.
func introspectingVerifier(t *testing.T, ti *testIssuer, srv *introspectionServer, mod ...func(*IntrospectionOptions)) *Verifier {
	return newTestVerifier(t, ti, func(o *Options) {
		io := &IntrospectionOptions{Endpoint: srv.URL, ClientID: "gateway", ClientSecret: "gw/secret",
			CacheTTL: time.Minute, NegativeCacheTTL: 10 * time.Second}
		for _, m := range mod {
			m(io)
		}
		o.Issuers[0].Introspection = io
	})
}

func activeAnswer(ti *testIssuer, jkt string, now time.Time) map[string]any {
	a := map[string]any{
		"active": true, "iss": ti.URL, "sub": "user-9", "client_id": "opaque-agent", "scope": "tools:call",
		"aud": "https://api.example.com", "exp": now.Add(10 * time.Minute).Unix(), "tier": "business",
	}
	if jkt != "" {
		a["cnf"] = map[string]any{"jkt": jkt}
	}
	return a
}

func TestIntrospectionAnswers(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t)
	v := introspectingVerifier(t, ti, srv)
	pk := newProofKey(t, "ES256", "client")
	bend := func(mod func(a map[string]any)) map[string]any {
		a := activeAnswer(ti, pk.jkt, now)
		mod(a)
		return a
	}
	for _, tc := range []struct {
		name   string
		answer map[string]any
		code   Code
		reason Reason
	}{
		{"ok/active", activeAnswer(ti, pk.jkt, now), "", ""},
		{"ok/no-exp-no-aud", bend(func(a map[string]any) { delete(a, "exp"); delete(a, "aud") }), "", ""},
		{"fail/inactive", map[string]any{"active": false}, InvalidToken, ReasonInactive},
		{"fail/expired", bend(func(a map[string]any) { a["exp"] = now.Add(-time.Minute).Unix() }), InvalidToken, ReasonExpired},
		{"fail/wrong-aud", bend(func(a map[string]any) { a["aud"] = "https://other.example.com" }), InvalidToken, ReasonAudience},
		{"fail/other-issuer", bend(func(a map[string]any) { a["iss"] = "https://stranger.example.com" }), InvalidToken, ReasonUnknownIssuer},
		{"fail/no-client", bend(func(a map[string]any) { delete(a, "client_id"); delete(a, "sub") }), InvalidToken, ReasonNoClient},
		{"fail/active-not-bool", map[string]any{"active": "true"}, TemporarilyUnavailable, ReasonIntrospectionUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := "opaque-" + randomID()
			srv.set(token, tc.answer)
			res, err := v.Verify(bg, dpopRequest(token, pk.proof(t, "POST", testURL, token, now), now))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				p := res.Principal
				if p.ClientID != "opaque-agent" || p.Subject != "user-9" || p.Tier != "business" || p.JKT != pk.jkt || !p.Introspected {
					t.Fatalf("got principal %+v", p)
				}
				return
			}
			wantCode(t, err, tc.code, tc.reason)
		})
	}
}

// TestIntrospectionBinding: the cnf.jkt of the answer binds the opaque
// token exactly as the JWT claim does.
func TestIntrospectionBinding(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t)
	v := introspectingVerifier(t, ti, srv)
	pk, other := newProofKey(t, "ES256", "client"), newProofKey(t, "ES256", "other")
	token := "opaque-bound"
	srv.set(token, activeAnswer(ti, pk.jkt, now))
	_, err := v.Verify(bg, dpopRequest(token, other.proof(t, "POST", testURL, token, now), now))
	wantCode(t, err, InvalidDPoPProof, ReasonJKTMismatch)
	_, err = v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + token}, Now: now})
	wantCode(t, err, InvalidToken, ReasonBearerDowngrade)
	if _, err := v.Verify(bg, dpopRequest(token, pk.proof(t, "POST", testURL, token, now), now)); err != nil {
		t.Fatalf("the bound key: got %v, want success", err)
	}
}

// TestIntrospectionCache: one call for a hundred concurrent requests with a
// new token; positive answers until the earlier of exp and cache_ttl,
// negative ones for negative_cache_ttl; with the endpoint down, cached
// answers keep working and new tokens get 503, never "accept".
func TestIntrospectionCache(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t)
	v := introspectingVerifier(t, ti, srv)
	token := "opaque-cached"
	a := activeAnswer(ti, "", now)
	a["exp"] = now.Add(30 * time.Second).Unix() // earlier than cache_ttl (1m)
	srv.set(token, a)
	bearerAt := func(tok string, at time.Time) error {
		_, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + tok}, Now: at})
		return err
	}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := bearerAt(token, now); err != nil {
				t.Errorf("got %v, want success", err)
			}
		}()
	}
	wg.Wait()
	if got := srv.calls.Load(); got != 1 {
		t.Fatalf("got %d introspection calls for 100 concurrent requests, want 1", got)
	}
	// Revoked at the issuer: the cache still answers until exp (30s) ...
	srv.set(token, map[string]any{"active": false})
	if err := bearerAt(token, now.Add(20*time.Second)); err != nil || srv.calls.Load() != 1 {
		t.Fatalf("within the cache: got %v after %d calls", err, srv.calls.Load())
	}
	// ... and past exp the issuer is asked again, and says no.
	err := bearerAt(token, now.Add(31*time.Second))
	wantCode(t, err, InvalidToken, ReasonInactive)
	if srv.calls.Load() != 2 {
		t.Fatalf("got %d calls, want the issuer asked again once the cached answer ran out", srv.calls.Load())
	}

	// Negative answers are cached for negative_cache_ttl.
	unknown := "opaque-unknown"
	for i := 0; i < 5; i++ {
		wantCode(t, bearerAt(unknown, now), InvalidToken, ReasonInactive)
	}
	calls := srv.calls.Load()
	wantCode(t, bearerAt(unknown, now.Add(11*time.Second)), InvalidToken, ReasonInactive)
	if srv.calls.Load() != calls+1 {
		t.Fatalf("negative cache: got %d calls, want %d", srv.calls.Load(), calls+1)
	}

	// The endpoint goes down: cached answers work, new tokens get 503.
	fresh := "opaque-fresh"
	srv.set(fresh, activeAnswer(ti, "", now))
	if err := bearerAt(fresh, now); err != nil {
		t.Fatal(err)
	}
	srv.down.Store(true)
	if err := bearerAt(fresh, now.Add(time.Second)); err != nil {
		t.Fatalf("endpoint down, cached token: got %v, want success", err)
	}
	srv.set("opaque-new", activeAnswer(ti, "", now))
	wantCode(t, bearerAt("opaque-new", now), TemporarilyUnavailable, ReasonIntrospectionUnavailable)
}

// TestIntrospectJWT: on a route that introspects, a JWT that verifies is
// refused once the issuer says it is no longer active.
func TestIntrospectJWT(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	srv := newIntrospectionServer(t)
	v := introspectingVerifier(t, ti, srv, func(o *IntrospectionOptions) { o.CacheTTL = 5 * time.Second })
	tok := ti.token(t, "k1", ti.claims("", now))
	req := func(at time.Time, introspect bool) error {
		_, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + tok}, Introspect: introspect, Now: at})
		return err
	}
	srv.set(tok, activeAnswer(ti, "", now))
	if err := req(now, true); err != nil {
		t.Fatalf("active: got %v", err)
	}
	srv.set(tok, map[string]any{"active": false}) // revoked
	if err := req(now.Add(time.Second), true); err != nil {
		t.Fatalf("revoked, within the cache ttl: got %v, want success", err)
	}
	wantCode(t, req(now.Add(6*time.Second), true), InvalidToken, ReasonInactive)
	if err := req(now.Add(6*time.Second), false); err != nil {
		t.Fatalf("a route without introspection still takes the JWT until exp: got %v", err)
	}
	// An issuer without introspection cannot be asked.
	plain := newTestVerifier(t, ti)
	_, err := plain.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + tok}, Introspect: true, Now: now})
	wantCode(t, err, InvalidToken, ReasonNotIntrospectable)
}

func TestIntrospectionPrivateKeyJWT(t *testing.T) {
	now := time.Now()
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t)
	priv, err := jwk.FromRaw(testKey(t, "ES256", "introspection-client"))
	if err != nil {
		t.Fatal(err)
	}
	srv.pubKey, _ = priv.PublicKey()
	v := introspectingVerifier(t, ti, srv, func(o *IntrospectionOptions) { o.ClientSecret = ""; o.PrivateKey = priv })
	srv.set("opaque-pkjwt", activeAnswer(ti, "", now))
	if _, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-pkjwt"}, Now: now}); err != nil {
		t.Fatalf("got %v, want success with a private_key_jwt assertion", err)
	}
}

// TestIntrospectionRefusalPerRequest: a cached refusal is shared by every
// request with that token, and each still gets its own challenge scheme
// (and no data race: run with -race).
func TestIntrospectionRefusalPerRequest(t *testing.T) {
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t) // unknown tokens are inactive
	v := introspectingVerifier(t, ti, srv)
	req := func(scheme string) Request {
		return Request{Method: "GET", URL: testURL, Authorization: []string{scheme + " opaque-revoked"}, DPoP: []string{"x.y.z"}, Now: testNow}
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		for _, scheme := range []string{"Bearer", "DPoP"} {
			wg.Add(1)
			go func(scheme string) {
				defer wg.Done()
				_, err := v.Verify(bg, req(scheme))
				if e := AsError(err); e == nil || e.Scheme != scheme || e.Reason != ReasonInactive {
					t.Errorf("%s request: got %v (scheme %q), want inactive in its own scheme", scheme, err, e.Scheme)
				}
			}(scheme)
		}
	}
	wg.Wait()
}

// TestIntrospectionOnlyAtAllowedIssuers: an opaque token is shown only to
// the issuers the route accepts, never to every issuer that introspects.
func TestIntrospectionOnlyAtAllowedIssuers(t *testing.T) {
	a, b := newTestIssuer(t), newTestIssuer(t)
	sa, sb := newIntrospectionServer(t), newIntrospectionServer(t)
	v2 := newTestVerifier(t, a, func(o *Options) {
		o.Issuers[0].Introspection = &IntrospectionOptions{Endpoint: sa.URL, ClientID: "gateway", ClientSecret: "gw/secret", CacheTTL: time.Minute}
		o.Issuers = append(o.Issuers, IssuerOptions{Issuer: b.URL, Audiences: []string{"https://api.example.com"}, Algorithms: []string{"ES256"},
			Introspection: &IntrospectionOptions{Endpoint: sb.URL, ClientID: "gateway", ClientSecret: "gw/secret", CacheTTL: time.Minute}})
	})
	sb.set("opaque-of-b", activeAnswer(b, "", testNow))
	_, err := v2.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-of-b"},
		Issuers: []string{a.URL}, Now: testNow})
	wantCode(t, err, InvalidToken, ReasonInactive)
	if sb.calls.Load() != 0 || sa.calls.Load() != 1 {
		t.Fatalf("got %d calls to a, %d to b; want the token shown to a only", sa.calls.Load(), sb.calls.Load())
	}
	if _, err := v2.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-of-b"}, Now: testNow}); err != nil {
		t.Fatalf("a route that takes every issuer: got %v, want b's answer", err)
	}
}

// TestIntrospectionTokenTypeDPoP: an answer with token_type "DPoP" says the
// token is DPoP-bound (RFC 9449 §6.2), and must name the key in cnf.jkt;
// without it, the binding cannot be checked and the token is not taken,
// above all not as a Bearer token.
func TestIntrospectionTokenTypeDPoP(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t)
	v := introspectingVerifier(t, ti, srv)
	pk := newProofKey(t, "ES256", "client")
	bearerReq := func(tok string) Request {
		return Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + tok}, Now: now}
	}
	t.Run("fail/dpop-type-without-cnf-as-bearer", func(t *testing.T) {
		for _, typ := range []string{"DPoP", "dpop"} {
			a := activeAnswer(ti, "", now)
			a["token_type"] = typ
			srv.set("opaque-typed-"+typ, a)
			_, err := v.Verify(bg, bearerReq("opaque-typed-"+typ))
			wantCode(t, err, InvalidToken, ReasonUnsupportedCnf)
		}
	})
	t.Run("ok/dpop-type-with-cnf", func(t *testing.T) {
		a := activeAnswer(ti, pk.jkt, now)
		a["token_type"] = "DPoP"
		srv.set("opaque-typed-bound", a)
		if _, err := v.Verify(bg, dpopRequest("opaque-typed-bound", pk.proof(t, "POST", testURL, "opaque-typed-bound", now), now)); err != nil {
			t.Fatalf("got %v, want success", err)
		}
	})
	t.Run("ok/bearer-type", func(t *testing.T) {
		a := activeAnswer(ti, "", now)
		a["token_type"] = "Bearer"
		srv.set("opaque-typed-bearer", a)
		if _, err := v.Verify(bg, bearerReq("opaque-typed-bearer")); err != nil {
			t.Fatalf("got %v, want success", err)
		}
	})
}

// TestIntrospectionRedirect: a redirect from the endpoint is not followed.
// Go's client would turn the POST into a GET without the token (301, 302,
// 303), and take whatever the new address says as the answer about a
// token it never saw, sending the Basic credentials along.
func TestIntrospectionRedirect(t *testing.T) {
	ti := newTestIssuer(t)
	var moved atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/moved", http.StatusFound)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		moved.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"active": true, "client_id": "anyone", "scope": "tools:call"})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	v := newTestVerifier(t, ti, func(o *Options) {
		o.Issuers[0].Introspection = &IntrospectionOptions{Endpoint: srv.URL + "/introspect", ClientID: "gateway", ClientSecret: "gw/secret", CacheTTL: time.Minute}
	})
	t.Run("fail/redirected-answer", func(t *testing.T) {
		_, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-redirected"}, Now: testNow})
		wantCode(t, err, TemporarilyUnavailable, ReasonIntrospectionUnavailable)
		if moved.Load() != 0 {
			t.Fatalf("the redirect was followed %d times", moved.Load())
		}
	})
}

// TestIntrospectionContentType: the answer is a JSON object in
// application/json (RFC 7662 §2.2); a body that parses as JSON under
// another media type (an HTML error page, a proxy's) is no answer.
func TestIntrospectionContentType(t *testing.T) {
	ti := newTestIssuer(t)
	for _, tc := range []struct{ name, ct string }{
		{"fail/text-html", "text/html"},
		{"fail/text-plain", "text/plain; charset=utf-8"},
		{"ok/json-charset", "application/json; charset=utf-8"},
		{"ok/absent", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil
				if tc.ct != "" {
					w.Header().Set("Content-Type", tc.ct)
				}
				json.NewEncoder(w).Encode(map[string]any{"active": true, "client_id": "agent", "scope": "tools:call"})
			}))
			defer srv.Close()
			v := newTestVerifier(t, ti, func(o *Options) {
				o.Issuers[0].Introspection = &IntrospectionOptions{Endpoint: srv.URL, ClientID: "gateway", ClientSecret: "gw/secret", CacheTTL: time.Minute}
			})
			_, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-ct"}, Now: testNow})
			if tc.name[:3] == "ok/" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			wantCode(t, err, TemporarilyUnavailable, ReasonIntrospectionUnavailable)
		})
	}
}

// TestIntrospectionNoExpNoCache: exp is optional in an answer (RFC 7662
// §2.2). With cache_ttl 0 and clock_skew 0 (both valid settings), an
// active answer without exp is still an active token, not one "expired 0s
// ago".
func TestIntrospectionNoExpNoCache(t *testing.T) {
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t)
	v := newTestVerifier(t, ti, func(o *Options) {
		o.ClockSkew = 0
		o.Issuers[0].Introspection = &IntrospectionOptions{Endpoint: srv.URL, ClientID: "gateway", ClientSecret: "gw/secret"}
	})
	a := activeAnswer(ti, "", testNow)
	delete(a, "exp")
	srv.set("opaque-no-exp", a)
	t.Run("ok/no-exp-no-cache-no-skew", func(t *testing.T) {
		for i := 1; i <= 2; i++ {
			_, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-no-exp"}, Now: testNow})
			if err != nil {
				t.Fatalf("got %v, want success", err)
			}
			if got := srv.calls.Load(); got != int32(i) {
				t.Fatalf("got %d calls, want %d: cache_ttl 0 caches nothing", got, i)
			}
		}
	})
}

// TestIntrospectionReloadTierClaim: a reload that changes tier_claim does
// not keep serving the principals that the old claim shaped: the cached
// answers of an unchanged issuer are taken over only when they would be
// read the same way.
func TestIntrospectionReloadTierClaim(t *testing.T) {
	ti := newTestIssuer(t)
	srv := newIntrospectionServer(t)
	v1 := introspectingVerifier(t, ti, srv)
	a := activeAnswer(ti, "", testNow)
	a["plan"] = "gold"
	srv.set("opaque-tiered", a)
	req := Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-tiered"}, Now: testNow}
	res, err := v1.Verify(bg, req)
	if err != nil || res.Principal.Tier != "business" {
		t.Fatalf("before the reload: %v %+v", err, res.Principal)
	}
	t.Run("fail/old-tier-after-reload", func(t *testing.T) {
		v2 := newTestVerifier(t, ti, func(o *Options) {
			o.Issuers[0].Introspection = &IntrospectionOptions{Endpoint: srv.URL, ClientID: "gateway", ClientSecret: "gw/secret",
				CacheTTL: time.Minute, NegativeCacheTTL: 10 * time.Second}
			o.TierClaim = "plan"
			o.Previous = v1
		})
		res, err := v2.Verify(bg, req)
		if err != nil || res.Principal.Tier != "gold" {
			t.Fatalf("after tier_claim tier -> plan: got %v, tier %q; want tier gold", err, res.Principal.Tier)
		}
	})
}
