// Package authtest is a test authorization server: RFC 8414 metadata and a
// JWKS on httptest, and RFC 9068 access tokens signed for real with jwx.
// Tests use it to mint any token they need, valid or not.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/dpopgate/dpopgate/gateway/dpopclient"
)

// Audience is the aud of the tokens Token mints unless told otherwise.
const Audience = "https://api.example.com"

// Issuer is an authorization server on httptest with one ES256 key.
type Issuer struct {
	URL     string
	Server  *httptest.Server
	handler http.Handler
	key     jwk.Key
	Fetches atomic.Int32 // JWKS requests
	Down    atomic.Bool  // answer 503 to everything
}

// NewIssuer starts an issuer; it stops when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	key.Set(jwk.KeyIDKey, "test-key-1")
	key.Set(jwk.AlgorithmKey, jwa.ES256)
	iss := &Issuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		if iss.Down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]string{"issuer": iss.URL, "jwks_uri": iss.URL + "/jwks", "token_endpoint": iss.URL + "/token"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		iss.Fetches.Add(1)
		if iss.Down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		pub, _ := iss.key.PublicKey()
		set := jwk.NewSet()
		set.AddKey(pub)
		writeJSON(w, set)
	})
	iss.handler = mux
	iss.Server = httptest.NewServer(mux)
	iss.URL = iss.Server.URL
	t.Cleanup(func() { iss.Server.Close() })
	return iss
}

// Stop shuts the issuer's server: connections are refused until Restart.
func (iss *Issuer) Stop() { iss.Server.Close() }

// Restart serves the issuer again on the same address, with the same keys.
func (iss *Issuer) Restart(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", strings.TrimPrefix(iss.URL, "http://"))
	if err != nil {
		t.Fatalf("restarting the issuer: %v", err)
	}
	iss.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: iss.handler}}
	iss.Server.Start()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Claims are the claims of a valid token for client clientID: iss, sub,
// aud, client_id, scope, iat, exp (in five minutes) and a jti.
func (iss *Issuer) Claims(clientID, scope string) map[string]any {
	now := time.Now()
	var jti [12]byte
	rand.Read(jti[:])
	return map[string]any{
		"iss":       iss.URL,
		"sub":       "user-of-" + clientID,
		"aud":       Audience,
		"client_id": clientID,
		"scope":     scope,
		"iat":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
		"jti":       base64.RawURLEncoding.EncodeToString(jti[:]),
	}
}

// Token signs claims as an RFC 9068 access token (typ at+jwt, ES256).
func (iss *Issuer) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	h.Set(jws.TypeKey, "at+jwt")
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, iss.key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// BoundToken is a valid token for clientID bound to key (cnf.jkt), with
// extra claims merged in (a nil value deletes a claim).
func (iss *Issuer) BoundToken(t testing.TB, key *dpopclient.Key, clientID, scope string, extra map[string]any) string {
	c := iss.Claims(clientID, scope)
	if key != nil {
		c["cnf"] = map[string]any{"jkt": key.Thumbprint()}
	}
	maps.Copy(c, extra)
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		}
	}
	return iss.Token(t, c)
}

// NewKey is a fresh ES256 DPoP key.
func NewKey(t testing.TB) *dpopclient.Key {
	t.Helper()
	k, err := dpopclient.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TokenWithKID signs claims with the issuer's key but names another kid in
// the header, as a token from a rotated-out or invented key would.
func (iss *Issuer) TokenWithKID(t testing.TB, claims map[string]any, kid string) string {
	t.Helper()
	k, err := iss.key.Clone()
	if err != nil {
		t.Fatal(err)
	}
	k.Set(jwk.KeyIDKey, kid)
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	h.Set(jws.TypeKey, "at+jwt")
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, k, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
