package auth

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// fuzzFixture is a verifier with loaded keys (served in memory, so a kid
// the fuzzer invents costs no network), a bound token and a valid proof.
func fuzzFixture(f *testing.F) (*Verifier, string, string) {
	ti := newTestIssuerAt(f, "https://issuer.test")
	ti.addKey(f, "k1", "ES256")
	v := newTestVerifier(f, ti, func(o *Options) { o.HTTPClient = inMemory(ti.handler) })
	pk := newProofKey(f, "ES256", "client")
	token := ti.token(f, "k1", ti.claims(pk.jkt, testNow))
	if _, err := v.Verify(bg, bearer(ti.token(f, "k1", ti.claims("", testNow)), testNow)); err != nil {
		f.Fatal(err)
	}
	return v, token, pk.proof(f, "POST", testURL, token, testNow)
}

// FuzzProof feeds arbitrary DPoP header values through every proof check.
// It must never panic, and a proof it accepts must be bound to the token's
// key (the fuzzer cannot forge a signature, so only the seed passes).
func FuzzProof(f *testing.F) {
	v, token, proof := fuzzFixture(f)
	p := strings.Split(proof, ".")
	for _, s := range []string{
		proof, p[0] + "." + p[1] + ".", p[0], "..", "a.b.c", proof + ".x",
		b64(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"","y":""}}`) + "." + p[1] + "." + p[2],
		b64(`{"typ":"dpop+jwt","alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}`) + "." + p[1] + "." + p[2],
		b64(`{"typ":"dpop+jwt","alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"AA"}}`) + "." + p[1] + "." + p[2],
		b64(`{"typ":"dpop+jwt","alg":"ES256","jwk":`+strings.Repeat("[", 5000)+`}`) + "." + p[1] + "." + p[2],
		p[0] + "." + b64(`{"jti":"x","htm":"POST","htu":"https://api.example.com/tools/search","iat":1e999}`) + "." + p[2],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		res, err := v.Verify(bg, dpopRequest(token, s, testNow))
		if err == nil && (res.Proof == nil || res.Proof.JKT != res.Principal.JKT) {
			t.Fatalf("accepted a proof not bound to the token: %+v", res)
		}
		if err != nil && AsError(err) == nil {
			t.Fatalf("got an untyped error %v", err)
		}
	})
}

// FuzzToken feeds arbitrary Authorization header values through parsing
// and access-token verification.
func FuzzToken(f *testing.F) {
	v, token, _ := fuzzFixture(f)
	p := strings.Split(token, ".")
	for _, s := range []string{
		"Bearer " + token, "DPoP " + token, "Bearer", "Basic x", "Bearer a.b.c", "Bearer " + p[0] + "." + p[1] + ".",
		"Bearer " + b64(`{"alg":"none"}`) + "." + p[1] + ".AA",
		"Bearer " + b64(`{"alg":"ES256","kid":"zz","typ":"at+jwt"}`) + "." + p[1] + "." + p[2],
		"Bearer " + p[0] + "." + b64(`{"iss":"https://issuer.test","exp":1e308,"aud":[[[]]]}`) + "." + p[2],
		"Bearer " + p[0] + "." + b64(`{"iss":"https://issuer.test","cnf":{"jkt":7}}`) + "." + p[2],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		res, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{s}, Now: testNow})
		if err != nil && AsError(err) == nil {
			t.Fatalf("got an untyped error %v", err)
		}
		if err == nil && res.Principal != nil && res.Principal.Issuer != "https://issuer.test" {
			t.Fatalf("accepted a token from %q", res.Principal.Issuer)
		}
	})
}

// FuzzNonce feeds arbitrary DPoP nonces to NonceSource.Valid. One it
// accepts must be exactly one the source minted within the lifetime (or
// up to a step ahead): the fuzzer cannot forge the HMAC, and no second
// spelling of a minted nonce may pass.
func FuzzNonce(f *testing.F) {
	now := testNow
	n, err := NewNonceSource([]byte(strings.Repeat("s", 32)), 40*time.Second)
	if err != nil {
		f.Fatal(err)
	}
	minted := n.Nonce(now)
	f.Add(minted, int64(0))
	f.Add(minted, int64(-41))
	f.Add(minted[:len(minted)-1]+"B", int64(0))
	f.Add(minted+"=", int64(5))
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", int64(0))
	f.Fuzz(func(t *testing.T, s string, offset int64) {
		at := now.Add(time.Duration(offset%1000) * time.Second)
		if !n.Valid(s, at) {
			return
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != nonceLen {
			t.Fatalf("accepted %q, which does not decode to a nonce", s)
		}
		ts := int64(binary.BigEndian.Uint64(b[:8]))
		if s != n.mint(ts) {
			t.Fatalf("accepted %q, which is not the nonce minted at %d", s, ts)
		}
		if age := at.Sub(time.Unix(ts, 0)); age >= 40*time.Second || age <= -10*time.Second {
			t.Fatalf("accepted a nonce %v old", age)
		}
	})
}

// FuzzIntrospection feeds arbitrary bytes to the verifier as an issuer's
// RFC 7662 answer about an opaque token. It must never panic; a failure is
// a typed error; and a token it accepts is one the answer calls active,
// for the configured issuer.
func FuzzIntrospection(f *testing.F) {
	ti := newTestIssuerAt(f, "https://issuer.test")
	ti.addKey(f, "k1", "ES256")
	var answer atomic.Pointer[[]byte]
	mux := http.NewServeMux()
	mux.Handle("/", ti.handler)
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(*answer.Load())
	})
	v := newTestVerifier(f, ti, func(o *Options) {
		o.HTTPClient = inMemory(mux)
		o.Issuers[0].Introspection = &IntrospectionOptions{Endpoint: ti.URL + "/introspect", ClientID: "gateway", ClientSecret: "s",
			CacheTTL: time.Minute, NegativeCacheTTL: time.Second}
	})
	exp := testNow.Add(time.Hour).Unix()
	for _, s := range []string{
		fmt.Sprintf(`{"active":true,"iss":"https://issuer.test","sub":"u","client_id":"c","aud":"https://api.example.com","exp":%d}`, exp),
		fmt.Sprintf(`{"active":true,"client_id":"c","exp":%d,"scope":"a b","tier":"business"}`, exp),
		`{"active":false}`, `{"active":"true"}`, `{"ACTIVE":true}`, `{"active":true,"active":true}`, `null`, `[]`, `{"active":true,"exp":1e999}`,
		fmt.Sprintf(`{"active":true,"exp":%d,"cnf":{"jkt":"x"}}`, exp),
	} {
		f.Add([]byte(s))
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, body []byte) {
		answer.Store(&body)
		token := fmt.Sprintf("opaque-token-%d", n.Add(1)) // never cached
		res, err := v.Verify(bg, bearer(token, testNow))
		if err != nil {
			if AsError(err) == nil {
				t.Fatalf("got an untyped error %v", err)
			}
			return
		}
		var a struct {
			Active bool   `json:"active"`
			Iss    string `json:"iss"`
		}
		if jsonv2.Unmarshal(body, &a) != nil || !a.Active || a.Iss != "" && a.Iss != ti.URL {
			t.Fatalf("accepted a token on the answer %q", body)
		}
		if res.Principal == nil || res.Principal.Issuer != ti.URL || !res.Principal.Introspected {
			t.Fatalf("accepted with principal %+v", res.Principal)
		}
	})
}

// FuzzJWKS serves arbitrary bytes as the issuer's JWKS to a fresh verifier
// and presents a token signed by the issuer's real key. It must never
// panic; a failure is a typed error; and the token passes only when the
// set carries that key (its x coordinate), since no other key verifies it.
func FuzzJWKS(f *testing.F) {
	ti := newTestIssuerAt(f, "https://issuer.test")
	ti.addKey(f, "k1", "ES256")
	token := ti.token(f, "k1", ti.claims("", testNow))
	real := ti.jwks(f)
	pub, err := jsonv2.Marshal(publicJWK(f, ti.keys["k1"]))
	if err != nil {
		f.Fatal(err)
	}
	var members map[string]any
	jsonv2.Unmarshal(pub, &members)
	x, _ := members["x"].(string)
	if x == "" {
		f.Fatalf("no x in %s", pub)
	}
	for _, s := range []string{
		string(real), `{"keys":[]}`, `{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`, `{"keys":null}`, `[]`,
		`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1"}]}`, `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"k1"}]}`,
		strings.Replace(string(real), `"sig"`, `"enc"`, 1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		mux := http.NewServeMux()
		mux.Handle("/", ti.handler)
		mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
		v, err := New(Options{
			Issuers: []IssuerOptions{{Issuer: ti.URL, Audiences: []string{"https://api.example.com"}, Algorithms: []string{"ES256", "RS256", "EdDSA"},
				RefreshInterval: time.Hour, MinRefreshInterval: time.Hour}},
			DPoPAlgorithms: []string{"ES256"}, MaxAge: time.Minute, HTTPClient: inMemory(mux),
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(bg, bearer(token, testNow))
		if err != nil && AsError(err) == nil {
			t.Fatalf("got an untyped error %v", err)
		}
		if err == nil && !strings.Contains(string(body), x) {
			t.Fatalf("accepted the token on a JWKS without its key: %q", body)
		}
	})
}
