package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func bearer(tok string, now time.Time) Request {
	return Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + tok}, Now: now}
}

func TestKeyRotation(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "old", "ES256")
	v := newTestVerifier(t, ti)
	if _, err := v.Verify(bg, bearer(ti.token(t, "old", ti.claims("", now)), now)); err != nil {
		t.Fatalf("old key: got %v, want success", err)
	}
	// The issuer rotates: a new key appears, the old one goes.
	ti.addKey(t, "new", "ES256")
	ti.removeKey("old")
	later := now.Add(6 * time.Second) // past min_refresh_interval
	if _, err := v.Verify(bg, bearer(ti.token(t, "new", ti.claims("", later)), later)); err != nil {
		t.Fatalf("new key after rotation: got %v, want success", err)
	}
	if got := ti.fetches.Load(); got != 2 {
		t.Fatalf("got %d JWKS fetches, want 2 (start, unknown kid)", got)
	}
	// A new token under the retired key no longer verifies.
	_, err := v.Verify(bg, bearer(ti.token(t, "old", ti.claims("", later)), later))
	wantCode(t, err, InvalidToken, ReasonUnknownKID)
}

// TestSharedKID: keys of different types may share a kid, as equivalent
// alternatives (RFC 7517 §4.5); each verifies the tokens it signed, and
// one does not hide the other.
func TestSharedKID(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	for kid, alg := range map[string]string{"rsa": "RS256", "ec": "ES256", "ed": "EdDSA"} {
		ti.addKey(t, kid, alg)
		ti.publishAs(kid, "shared")
	}
	v := newTestVerifier(t, ti)
	for _, kid := range []string{"rsa", "ec", "ed"} {
		if _, err := v.Verify(bg, bearer(ti.token(t, kid, ti.claims("", now)), now)); err != nil {
			t.Errorf("a token signed by the %s key under the shared kid: got %v, want success", kid, err)
		}
	}
	if got := ti.fetches.Load(); got != 1 {
		t.Errorf("got %d JWKS fetches, want 1", got)
	}
}

func TestIssuerDownServesCachedKeys(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	v := newTestVerifier(t, ti)
	if _, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now)); err != nil {
		t.Fatalf("got %v, want success", err)
	}
	ti.down.Store(true)
	// A scheduled refresh fails; the keys we have stay.
	later := now.Add(20 * time.Minute)
	v.order[0].keys.refreshIfDue(bg, later)
	if loaded, _ := v.order[0].keys.state(); !loaded {
		t.Fatalf("keys dropped after a failed refresh")
	}
	if _, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", later)), later)); err != nil {
		t.Fatalf("issuer down, known kid: got %v, want success", err)
	}
	// An unknown kid cannot be checked while the issuer is down: 503.
	ti.addKey(t, "k2", "ES256")
	_, err := v.Verify(bg, bearer(ti.token(t, "k2", ti.claims("", later.Add(time.Hour))), later.Add(time.Hour)))
	wantCode(t, err, TemporarilyUnavailable, ReasonKeysUnavailable)
}

func TestIssuerDownAtStart(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	ti.down.Store(true)
	v := newTestVerifier(t, ti)
	tok := ti.token(t, "k1", ti.claims("", now))
	_, err := v.Verify(bg, bearer(tok, now))
	wantCode(t, err, TemporarilyUnavailable, ReasonKeysUnavailable)
	// Within min_refresh_interval nobody fetches again, whatever comes in.
	for i := 0; i < 50; i++ {
		_, err = v.Verify(bg, bearer(tok, now.Add(time.Second)))
		wantCode(t, err, TemporarilyUnavailable, ReasonKeysUnavailable)
	}
	if got := ti.metadataOrJWKSFetches(); got > 1 {
		t.Fatalf("got %d fetch attempts, want at most 1", got)
	}
	if v.Issuers()[0].Loaded {
		t.Fatalf("issuer reported loaded while down")
	}
	// The issuer comes back; the next allowed attempt loads the keys.
	ti.down.Store(false)
	if _, err := v.Verify(bg, bearer(tok, now.Add(6*time.Second))); err != nil {
		t.Fatalf("issuer back: got %v, want success", err)
	}
	if !v.Issuers()[0].Loaded {
		t.Fatalf("issuer not reported loaded")
	}
}

// metadataOrJWKSFetches counts JWKS requests; while down, discovery fails
// first, so count attempts through the metadata handler too.
func (ti *testIssuer) metadataOrJWKSFetches() int32 { return ti.fetches.Load() + ti.discoveries.Load() }

// TestRandomKIDFlood: a thousand tokens with random kids make at most one
// fetch per min_refresh_interval, and a real new key is picked up once the
// interval has passed.
func TestRandomKIDFlood(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	v := newTestVerifier(t, ti)
	if _, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now)); err != nil {
		t.Fatal(err)
	}
	ti.mu.Lock()
	key := ti.keys["k1"]
	ti.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			at := now.Add(time.Duration(i) * 20 * time.Millisecond) // spread over 20s
			tok := signJWS(t, "ES256", key, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": fmt.Sprintf("rand-%d", i)}, ti.claims("", at))
			_, err := v.Verify(bg, bearer(tok, at))
			if e := AsError(err); e == nil || e.Reason != ReasonUnknownKID {
				t.Errorf("random kid %d: got %v, want unknown_kid", i, err)
			}
		}(i)
	}
	wg.Wait()
	// 20s at one fetch per 5s at most: the start, then at most four.
	if got := ti.fetches.Load(); got < 2 || got > 5 {
		t.Fatalf("got %d JWKS fetches during the flood, want 2 to 5", got)
	}
	// The issuer publishes a real new key; after the interval it is found.
	ti.addKey(t, "k2", "ES256")
	later := now.Add(30 * time.Second)
	if _, err := v.Verify(bg, bearer(ti.token(t, "k2", ti.claims("", later)), later)); err != nil {
		t.Fatalf("real new kid after the flood: got %v, want success", err)
	}
}

// TestUnknownKIDSingleFlight: concurrent tokens with one new kid share one
// fetch.
func TestUnknownKIDSingleFlight(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	v := newTestVerifier(t, ti)
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now)); err != nil {
				t.Errorf("got %v, want success", err)
			}
		}()
	}
	wg.Wait()
	if got := ti.fetches.Load(); got != 1 {
		t.Fatalf("got %d fetches for 64 concurrent cold tokens, want 1", got)
	}
}

func TestTokenCache(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	v := newTestVerifier(t, ti)
	claims := ti.claims("", now)
	claims["exp"] = now.Add(time.Minute).Unix()
	tok := ti.token(t, "k1", claims)
	if _, err := v.Verify(bg, bearer(tok, now)); err != nil {
		t.Fatal(err)
	}
	// Take the keys away: only a cache hit can still verify the token.
	v.order[0].keys.snap.Store(&keySnapshot{byKID: map[string][]*verifyKey{}, fetchedAt: now})
	ti.down.Store(true)
	for i := 0; i < 1000; i++ {
		if _, err := v.Verify(bg, bearer(tok, now.Add(time.Second))); err != nil {
			t.Fatalf("cached token, call %d: got %v, want success", i, err)
		}
	}
	if got := v.tokens.len(); got != 1 {
		t.Fatalf("got %d cached tokens, want 1", got)
	}
	// Past exp the cache no longer answers (and the skew no longer helps).
	_, err := v.Verify(bg, bearer(tok, now.Add(time.Minute+time.Second)))
	if AsError(err) == nil {
		t.Fatalf("got success past exp, want the token checked again")
	}
	// Another token is not served from the cache.
	_, err = v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now.Add(time.Second)))
	wantCode(t, err, InvalidToken, ReasonUnknownKID)
}

func TestTokenCacheBounded(t *testing.T) {
	c := newSumCache[*Principal](64)
	for i := 0; i < 10_000; i++ {
		var sum [32]byte
		sum[0], sum[1], sum[2] = byte(i), byte(i>>8), byte(i>>16)
		c.put(sum, &Principal{}, testNow.Add(time.Hour), testNow)
	}
	if got := c.len(); got > 64 {
		t.Fatalf("got %d entries, want at most 64", got)
	}
}

func TestUnknownIssuerFetchesNothing(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	v := newTestVerifier(t, ti)
	c := ti.claims("", now)
	c["iss"] = "https://stranger.example.com"
	_, err := v.Verify(bg, bearer(ti.token(t, "k1", c), now))
	wantCode(t, err, InvalidToken, ReasonUnknownIssuer)
	if got := ti.metadataOrJWKSFetches(); got != 0 {
		t.Fatalf("got %d fetches for an unknown issuer, want 0", got)
	}
}

// TestDiscovery: RFC 8414 first, then OpenID Connect discovery; the
// metadata must name the issuer; a configured jwks_uri skips discovery.
func TestDiscovery(t *testing.T) {
	keys := newTestIssuer(t) // serves the JWKS
	keys.addKey(t, "k1", "ES256")
	for _, tc := range []struct {
		name    string
		rfc8414 bool
		oidc    bool
		naming  string // issuer named in the metadata; "" for the right one
		ok      bool
	}{
		{"ok/rfc8414", true, false, "", true},
		{"ok/oidc-fallback", false, true, "", true},
		{"fail/none", false, false, "", false},
		{"fail/wrong-issuer", true, true, "https://evil.example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *httptest.Server
			mux := http.NewServeMux()
			meta := func(w http.ResponseWriter, r *http.Request) {
				name := tc.naming
				if name == "" {
					name = srv.URL + "/tenant"
				}
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]string{"issuer": name, "jwks_uri": keys.URL + "/jwks"})
			}
			if tc.rfc8414 {
				mux.HandleFunc("/.well-known/oauth-authorization-server/tenant", meta)
			}
			if tc.oidc {
				mux.HandleFunc("/tenant/.well-known/openid-configuration", meta)
			}
			srv = httptest.NewServer(mux)
			defer srv.Close()
			md, err := Discover(bg, http.DefaultClient, srv.URL+"/tenant")
			if tc.ok != (err == nil) {
				t.Fatalf("got %+v, %v; want ok=%v", md, err, tc.ok)
			}
			if tc.ok && md.JWKSURI != keys.URL+"/jwks" {
				t.Fatalf("got jwks_uri %q", md.JWKSURI)
			}
		})
	}
}

func TestConfiguredJWKSURI(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	v := newTestVerifier(t, ti, func(o *Options) { o.Issuers[0].JWKSURI = ti.URL + "/jwks" })
	if _, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now)); err != nil {
		t.Fatal(err)
	}
	if got := ti.discoveries.Load(); got != 0 {
		t.Fatalf("got %d discovery requests with jwks_uri configured, want 0", got)
	}
}

// TestJWKSForeignKeys: a JWK Set may hold keys of types we do not
// understand next to the signing key (RFC 7517 §5: implementations SHOULD
// ignore such JWKs); they must not make the whole set unusable.
func TestJWKSForeignKeys(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	set := string(ti.jwks(t))
	for _, tc := range []struct{ name, key string }{
		{"ok/jwks-post-quantum-akp", `{"kty":"AKP","alg":"ML-DSA-44","kid":"pq","pub":"AAAA"}`},
		{"ok/jwks-unknown-kty", `{"kty":"future","kid":"f"}`},
		{"ok/jwks-kty-missing", `{"kid":"nokty","use":"sig"}`},
		{"ok/jwks-malformed-rsa", `{"kty":"RSA","kid":"r","n":1,"e":"AQAB"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(set, `{"keys":[`, `{"keys":[`+tc.key+`,`, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/jwk-set+json")
				w.Write([]byte(body))
			}))
			defer srv.Close()
			v := newTestVerifier(t, ti, func(o *Options) { o.Issuers[0].JWKSURI = srv.URL })
			if _, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now)); err != nil {
				t.Fatalf("got %v, want success", err)
			}
		})
	}
}

func TestCacheMaxAge(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":                         0,
		"max-age=60":               time.Minute,
		"public, max-age=300":      5 * time.Minute,
		`max-age="30", must-reval`: 30 * time.Second,
		"no-store":                 0,
		"max-age=-5":               0,
		"max-age=x":                0,
	} {
		if got := cacheMaxAge(in); got != want {
			t.Errorf("cacheMaxAge(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestScheduledRefresh drives Verifier.Run in a synctest bubble: the keys
// load at once, refresh after refresh_interval, and back off after errors.
func TestScheduledRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ti := newTestIssuerAt(t, "https://issuer.test")
		ti.addKey(t, "k1", "ES256")
		v := newTestVerifier(t, ti, func(o *Options) {
			o.HTTPClient = inMemory(ti.handler)
			o.Issuers[0].RefreshInterval = time.Minute
			o.Issuers[0].MinRefreshInterval = 5 * time.Second
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { v.Run(ctx, nil); close(done) }()
		waitFetches := func(want int32) {
			t.Helper()
			for i := 0; i < 1000 && ti.fetches.Load() < want; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			if got := ti.fetches.Load(); got != want {
				t.Fatalf("got %d fetches, want %d", got, want)
			}
		}
		waitFetches(1)
		time.Sleep(30 * time.Second)
		if got := ti.fetches.Load(); got != 1 {
			t.Fatalf("got %d fetches after 30s, want 1", got)
		}
		waitFetches(2) // at one minute
		ti.down.Store(true)
		waitFetches(3) // the refresh at two minutes fails...
		waitFetches(4) // ...and is retried 5s later,
		waitFetches(5) // then 10s later: backoff
		cancel()
		<-done
	})
}

// TestReloadKeepsKeys: a verifier built with Previous takes over the keys
// of every issuer whose options did not change, and only those.
func TestReloadKeepsKeys(t *testing.T) {
	now := testNow
	a, b := newTestIssuer(t), newTestIssuer(t)
	a.addKey(t, "k1", "ES256")
	b.addKey(t, "k1", "ES256")
	both := func(o *Options) {
		o.Issuers = append(o.Issuers, IssuerOptions{Issuer: b.URL, Audiences: []string{"https://api.example.com"},
			Algorithms: []string{"ES256"}, RequireTyp: true})
	}
	old := newTestVerifier(t, a, both)
	for _, ti := range []*testIssuer{a, b} {
		if _, err := old.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now)); err != nil {
			t.Fatal(err)
		}
	}
	next := newTestVerifier(t, a, both, func(o *Options) {
		o.Issuers[1].MinRefreshInterval = time.Second // b changed
		o.Previous = old
	})
	states := next.Issuers()
	if !states[0].Loaded || states[1].Loaded {
		t.Fatalf("got %+v, want a's keys kept and b's dropped", states)
	}
	for _, ti := range []*testIssuer{a, b} {
		if _, err := next.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now)); err != nil {
			t.Fatal(err)
		}
	}
	if a.fetches.Load() != 1 || b.fetches.Load() != 2 {
		t.Fatalf("got %d and %d fetches, want 1 for the unchanged issuer and 2 for the changed one", a.fetches.Load(), b.fetches.Load())
	}
}

// TestJWKSContentType: a JWK Set is read whatever media type it is served
// as: a static file in an object store or on a plain web server often goes
// out as text/plain or binary/octet-stream, and the body must parse as a
// JWK Set anyway. An HTML error page still does not.
func TestJWKSContentType(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	set := ti.jwks(t)
	for _, tc := range []struct {
		name, ct string
		body     []byte
		ok       bool
	}{
		{"ok/text-plain", "text/plain; charset=utf-8", set, true},
		{"ok/octet-stream", "binary/octet-stream", set, true},
		{"ok/jwk-set-json", "application/jwk-set+json", set, true},
		{"fail/html-error-page", "text/html", []byte("<html><body>502 Bad Gateway</body></html>"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				w.Write(tc.body)
			}))
			defer srv.Close()
			v := newTestVerifier(t, ti, func(o *Options) { o.Issuers[0].JWKSURI = srv.URL })
			_, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now))
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want success: %v", err, tc.ok)
			}
		})
	}
}

// TestFetchErrorsHideQuery: a jwks_uri or introspection endpoint may carry
// a key in its query (?code=..., as some hosted functions want); the
// errors that go to the log name the URL without it, whether the server
// answers badly or cannot be reached.
func TestFetchErrorsHideQuery(t *testing.T) {
	const secret = "Qk9HVVNfS0VZX0lOX1FVRVJZ"
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer bad.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, tc := range []struct{ name, base string }{
		{"fail/jwks-status", bad.URL},
		{"fail/jwks-unreachable", gone.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fetchErr error
			v := newTestVerifier(t, ti, func(o *Options) {
				o.Issuers[0].JWKSURI = tc.base + "/jwks?code=" + secret
				o.OnFetch = func(_ string, err error) {
					if err != nil {
						fetchErr = err
					}
				}
			})
			_, err := v.Verify(bg, bearer(ti.token(t, "k1", ti.claims("", now)), now))
			if err == nil || fetchErr == nil {
				t.Fatalf("got %v, fetch error %v, want both", err, fetchErr)
			}
			for _, e := range []error{err, fetchErr, errors.Unwrap(err)} {
				if e != nil && strings.Contains(e.Error(), secret) {
					t.Fatalf("error quotes the query: %v", e)
				}
			}
		})
	}
	for _, tc := range []struct{ name, base string }{
		{"fail/introspection-status", bad.URL},
		{"fail/introspection-unreachable", gone.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen error
			v := newTestVerifier(t, ti, func(o *Options) {
				o.Issuers[0].Introspection = &IntrospectionOptions{Endpoint: tc.base + "/introspect?code=" + secret,
					ClientID: "gateway", ClientSecret: "gw/secret", CacheTTL: time.Minute}
				o.OnIntrospect = func(_ string, err error) {
					if err != nil {
						seen = err
					}
				}
			})
			_, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer opaque-query"}, Now: testNow})
			if err == nil {
				t.Fatal("got no error")
			}
			for e := error(err); e != nil; e = errors.Unwrap(e) {
				if strings.Contains(e.Error(), secret) {
					t.Fatalf("error quotes the query: %v", e)
				}
			}
			if seen != nil && strings.Contains(seen.Error(), secret) {
				t.Fatalf("observed error quotes the query: %v", seen)
			}
		})
	}
}
