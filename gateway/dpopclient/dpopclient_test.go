package dpopclient_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/gateway/dpopclient"
	"github.com/dpopgate/dpopgate/gateway/internal/authtest"
)

// TestProofsVerify: a token bound to each kind of key, and the key's
// proofs, pass the gateway's own verifier.
func TestProofsVerify(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, err := auth.New(auth.Options{
		Issuers:        []auth.IssuerOptions{{Issuer: iss.URL, Audiences: []string{authtest.Audience}, Algorithms: []string{"ES256"}, RequireTyp: true}},
		DPoPAlgorithms: dpopclient.Algorithms,
		MaxAge:         time.Minute,
		ClockSkew:      5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range dpopclient.Algorithms {
		t.Run("ok/"+alg, func(t *testing.T) {
			k, err := dpopclient.GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			// Round trip through the private JWK.
			b, err := json.Marshal(k)
			if err != nil {
				t.Fatal(err)
			}
			k2, err := dpopclient.ParseKey(b)
			if err != nil {
				t.Fatal(err)
			}
			if k2.Thumbprint() != k.Thumbprint() || k2.Algorithm() != alg {
				t.Fatalf("got %s/%s after a round trip, want %s/%s", k2.Algorithm(), k2.Thumbprint(), alg, k.Thumbprint())
			}
			tok := iss.BoundToken(t, k, "agent", "", nil)
			url := "https://api.example.com/tools?x=1"
			proof, err := k2.Proof("POST", url, tok, "", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), auth.Request{
				Method: "POST", URL: url, Authorization: []string{"DPoP " + tok}, DPoP: []string{proof}, Now: time.Now(),
			})
			if err != nil {
				t.Fatalf("got %v, want the proof accepted", err)
			}
			if res.Proof.JKT != k.Thumbprint() {
				t.Fatalf("got jkt %s, want %s", res.Proof.JKT, k.Thumbprint())
			}
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	k, _ := dpopclient.GenerateKey("ES256")
	for name, in := range map[string]string{
		"fail/not-json":   "not json",
		"fail/public-key": string(k.PublicJWK()),
		"fail/symmetric":  `{"kty":"oct","k":"c2VjcmV0"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := dpopclient.ParseKey([]byte(in)); err == nil {
				t.Fatalf("got a key, want an error")
			}
		})
	}
}

// TestTransportNonce: a server that demands a nonce gets one on the retry,
// and the next request carries it from the start.
func TestTransportNonce(t *testing.T) {
	const nonce = "n-1"
	var calls, withNonce atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if string(body) != "payload" {
			t.Errorf("got body %q on call %d, want payload", body, calls.Load())
		}
		if r.Header.Get("Authorization") != "DPoP tok" {
			t.Errorf("got Authorization %q", r.Header.Get("Authorization"))
		}
		parts := strings.Split(r.Header.Get("DPoP"), ".")
		var claims map[string]any
		if len(parts) == 3 {
			b, _ := decodeSegment(parts[1])
			json.Unmarshal(b, &claims)
		}
		if claims["nonce"] != nonce {
			w.Header().Set("DPoP-Nonce", nonce)
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		withNonce.Add(1)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	k, _ := dpopclient.GenerateKey("ES256")
	c := &http.Client{Transport: &dpopclient.Transport{Key: k, Token: "tok"}}
	for i := 0; i < 2; i++ {
		resp, err := c.Post(srv.URL+"/x", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: got %d, want 200", i, resp.StatusCode)
		}
	}
	if calls.Load() != 3 || withNonce.Load() != 2 {
		t.Fatalf("got %d calls (%d with the nonce), want 3 (2)", calls.Load(), withNonce.Load())
	}
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
