package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Real keys, real signatures: every key here is generated with crypto/rand
// and every JWS is signed with jwx's signers.

var (
	keyMu    sync.Mutex
	keyCache = map[string]crypto.Signer{}
)

// testKey returns a private key for alg, generated once per name so the
// (slow) RSA keys are made once per test binary.
func testKey(t testing.TB, alg, name string) crypto.Signer {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	id := alg + "/" + name
	if k, ok := keyCache[id]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch alg {
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no test key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	keyCache[id] = k
	return k
}

func publicJWK(t testing.TB, k crypto.Signer) jwk.Key {
	t.Helper()
	pub, err := jwk.FromRaw(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func thumbprint(t testing.TB, k crypto.Signer) string {
	t.Helper()
	tp, err := publicJWK(t, k).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// signJWS builds a compact JWS from the given header and claims, signed with
// key under alg by jwx. Nothing is added: tests control every member.
func signJWS(t testing.TB, alg string, key any, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return signRawJWS(t, alg, key, string(h), string(c))
}

// signRawJWS is signJWS for header and claims given as JSON text, so tests
// control member order, spelling and duplicates.
func signRawJWS(t testing.TB, alg string, key any, header, claims string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	signer, err := jws.NewSigner(jwa.SignatureAlgorithm(alg))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign([]byte(input), key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// testIssuer is an authorization server on httptest: RFC 8414 metadata and
// a JWKS that tests can rotate, break and count.
type testIssuer struct {
	srv         *httptest.Server
	URL         string
	handler     http.Handler
	mu          sync.Mutex
	keys        map[string]crypto.Signer // kid -> private key
	algs        map[string]string        // kid -> alg
	retired     map[string]bool          // kids no longer published
	published   map[string]string        // kid -> the kid the JWKS and tokens show, when another
	fetches     atomic.Int32             // JWKS requests
	discoveries atomic.Int32             // metadata requests
	down        atomic.Bool
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	ti := newTestIssuerAt(t, "")
	ti.srv = httptest.NewServer(ti.handler)
	ti.URL = ti.srv.URL
	t.Cleanup(ti.srv.Close)
	return ti
}

// newTestIssuerAt builds the issuer's handler for url without listening;
// newTestIssuer puts it on httptest, synctest tests call it in memory.
func newTestIssuerAt(t testing.TB, url string) *testIssuer {
	ti := &testIssuer{URL: url, keys: map[string]crypto.Signer{}, algs: map[string]string{}, retired: map[string]bool{}, published: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		ti.discoveries.Add(1)
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"issuer": ti.URL, "jwks_uri": ti.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(ti.jwks(t))
	})
	ti.handler = mux
	return ti
}

// inMemory is an http.Client that hands requests straight to h.
func inMemory(h http.Handler) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Result(), nil
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// addKey publishes a new signing key under kid.
func (ti *testIssuer) addKey(t testing.TB, kid, alg string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys[kid] = testKey(t, alg, ti.URL+kid)
	ti.algs[kid] = alg
}

// publishAs shows the key kid under another kid, in the JWKS and in the
// tokens it signs: several keys can then share one.
func (ti *testIssuer) publishAs(kid, shown string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.published[kid] = shown
}

// shownKID is the kid the key kid is published under.
func (ti *testIssuer) shownKID(kid string) string {
	if shown, ok := ti.published[kid]; ok {
		return shown
	}
	return kid
}

// removeKey stops publishing kid; tests can still sign with it.
func (ti *testIssuer) removeKey(kid string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.retired[kid] = true
}

func (ti *testIssuer) jwks(t testing.TB) []byte {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	set := jwk.NewSet()
	for kid, k := range ti.keys {
		if ti.retired[kid] {
			continue
		}
		pub := publicJWK(t, k)
		pub.Set(jwk.KeyIDKey, ti.shownKID(kid))
		pub.Set(jwk.KeyUsageKey, "sig")
		set.AddKey(pub)
	}
	b, _ := json.Marshal(set)
	return b
}

// claims are the claims of a valid DPoP-bound token for the test audience.
func (ti *testIssuer) claims(jkt string, now time.Time) map[string]any {
	c := map[string]any{
		"iss":       ti.URL,
		"sub":       "user-1",
		"aud":       "https://api.example.com",
		"client_id": "agent-1",
		"scope":     "listings:read tools:call",
		"iat":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
		"jti":       randomID(),
	}
	if jkt != "" {
		c["cnf"] = map[string]any{"jkt": jkt}
	}
	return c
}

// token signs claims with the issuer's key kid, typ at+jwt.
func (ti *testIssuer) token(t testing.TB, kid string, claims map[string]any) string {
	ti.mu.Lock()
	k, alg, shown := ti.keys[kid], ti.algs[kid], ti.shownKID(kid)
	ti.mu.Unlock()
	return signJWS(t, alg, k, map[string]any{"alg": alg, "typ": "at+jwt", "kid": shown}, claims)
}

// boundSetup is what most proof tests start from: an issuer with an ES256
// key k1, a verifier for it (changed by mod), a client key for proofs
// under proofAlg, and a token from the issuer bound to that key, issued at
// testNow.
func boundSetup(t testing.TB, proofAlg string, mod ...func(*Options)) (*testIssuer, *Verifier, *proofKey, string) {
	t.Helper()
	ti := newTestIssuer(t)
	ti.addKey(t, "k1", "ES256")
	v := newTestVerifier(t, ti, mod...)
	pk := newProofKey(t, proofAlg, "client")
	return ti, v, pk, ti.token(t, "k1", ti.claims(pk.jkt, testNow))
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// proofKey is a client's DPoP key.
type proofKey struct {
	alg  string
	priv crypto.Signer
	jwk  map[string]any // public JWK as JSON members
	jkt  string
}

func newProofKey(t testing.TB, alg, name string) *proofKey {
	t.Helper()
	k := testKey(t, alg, "proof/"+name)
	b, err := json.Marshal(publicJWK(t, k))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return &proofKey{alg: alg, priv: k, jwk: m, jkt: thumbprint(t, k)}
}

// proofParts are a proof's header and claims, for tests to bend.
func (pk *proofKey) proofParts(method, htu, token string, now time.Time) (map[string]any, map[string]any) {
	sum := sha256.Sum256([]byte(token))
	return map[string]any{"typ": "dpop+jwt", "alg": pk.alg, "jwk": pk.jwk},
		map[string]any{
			"jti": randomID(),
			"htm": method,
			"htu": htu,
			"iat": now.Unix(),
			"ath": base64.RawURLEncoding.EncodeToString(sum[:]),
		}
}

func (pk *proofKey) proof(t testing.TB, method, htu, token string, now time.Time) string {
	h, c := pk.proofParts(method, htu, token, now)
	return signJWS(t, pk.alg, pk.priv, h, c)
}

// newTestVerifier returns a Verifier that trusts ti (discovered via RFC 8414).
func newTestVerifier(t testing.TB, ti *testIssuer, mod ...func(*Options)) *Verifier {
	t.Helper()
	opts := Options{
		Issuers: []IssuerOptions{{
			Issuer:             ti.URL,
			Audiences:          []string{"https://api.example.com"},
			Algorithms:         []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"},
			RequireTyp:         true,
			RefreshInterval:    15 * time.Minute,
			MinRefreshInterval: 5 * time.Second,
		}},
		DPoPAlgorithms: []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"},
		MaxAge:         60 * time.Second,
		ClockSkew:      5 * time.Second,
		TierClaim:      "tier",
	}
	for _, m := range mod {
		m(&opts)
	}
	v, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const testURL = "https://api.example.com/tools/search"

// dpopRequest is a valid DPoP request for token and proof.
func dpopRequest(token, proof string, now time.Time) Request {
	return Request{
		Method:        "POST",
		URL:           testURL,
		Authorization: []string{"DPoP " + token},
		DPoP:          []string{proof},
		Now:           now,
	}
}

func wantCode(t *testing.T, err error, code Code, reason Reason) {
	t.Helper()
	e := AsError(err)
	if e == nil {
		t.Fatalf("got error %v, want %s/%s", err, code, reason)
	}
	if e.Code != code || e.Reason != reason {
		t.Fatalf("got %s/%s (%v), want %s/%s", e.Code, e.Reason, e.Err, code, reason)
	}
}

var bg = context.Background()

// noLeak fails when s shows up in an error text: causes never quote
// credentials.
func noLeak(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if len(s) > 16 && strings.Contains(err.Error(), s[len(s)-16:]) {
			t.Fatalf("error %q quotes a credential", err)
		}
	}
}
