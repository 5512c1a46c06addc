package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

var testNow = time.Unix(1_800_000_000, 0)

// TestProofChecks has one case per check of RFC 9449 §4.3, each bending one
// member of an otherwise valid proof, signed for real.
func TestProofChecks(t *testing.T) {
	now := testNow
	ti, v, pk, token := boundSetup(t, "ES256")
	otherToken := ti.token(t, "k1", ti.claims(pk.jkt, now))

	// sign re-signs header and claims with the client's key.
	sign := func(h, c map[string]any) string { return signJWS(t, pk.alg, pk.priv, h, c) }
	parts := func() (map[string]any, map[string]any) { return pk.proofParts("POST", testURL, token, now) }
	bent := func(mod func(h, c map[string]any)) func() []string {
		return func() []string {
			h, c := parts()
			mod(h, c)
			return []string{sign(h, c)}
		}
	}
	valid := func() string { h, c := parts(); return sign(h, c) }
	withJWK := func(j any) func(h, c map[string]any) {
		return func(h, c map[string]any) { h["jwk"] = j }
	}

	for _, tc := range []struct {
		name   string
		proofs func() []string
		code   Code
		reason Reason
	}{
		{"ok/valid", func() []string { return []string{valid()} }, "", ""},
		{"ok/typ-application-prefix", bent(func(h, c map[string]any) { h["typ"] = "application/dpop+jwt" }), "", ""},
		{"ok/typ-case", bent(func(h, c map[string]any) { h["typ"] = "DPoP+JWT" }), "", ""},
		{"ok/htu-normalised", bent(func(h, c map[string]any) { c["htu"] = "HTTPS://API.Example.COM:443/tools/./search?q=1" }), "", ""},
		{"ok/iat-at-max-age", bent(func(h, c map[string]any) { c["iat"] = now.Add(-65 * time.Second).Unix() }), "", ""},
		{"ok/iat-within-skew", bent(func(h, c map[string]any) { c["iat"] = now.Add(5 * time.Second).Unix() }), "", ""},
		{"ok/iat-fractional", bent(func(h, c map[string]any) { c["iat"] = float64(now.Unix()) + 0.5 }), "", ""},
		{"ok/extra-members", bent(func(h, c map[string]any) { h["kid"] = "x"; c["foo"] = map[string]any{"a": []int{1}} }), "", ""},

		// §4.3 item 1
		{"fail/no-proof", func() []string { return nil }, InvalidDPoPProof, ReasonMissingProof},
		{"fail/two-proofs", func() []string { return []string{valid(), valid()} }, InvalidDPoPProof, ReasonMultipleProofs},
		// §4.3 item 2
		{"fail/two-parts", func() []string { p := valid(); return []string{p[:strings.LastIndexByte(p, '.')]} }, InvalidDPoPProof, ReasonMalformedProof},
		{"fail/four-parts", func() []string { return []string{valid() + ".x"} }, InvalidDPoPProof, ReasonMalformedProof},
		{"fail/json-serialisation", func() []string { return []string{`{"payload":"e30","signatures":[]}`} }, InvalidDPoPProof, ReasonMalformedProof},
		{"fail/padding", func() []string { p := valid(); i := strings.IndexByte(p, '.'); return []string{p[:i] + "=" + p[i:]} }, InvalidDPoPProof, ReasonMalformedProof},
		{"fail/header-not-json", func() []string {
			p := valid()
			return []string{base64.RawURLEncoding.EncodeToString([]byte("not json")) + p[strings.IndexByte(p, '.'):]}
		}, InvalidDPoPProof, ReasonMalformedProof},
		{"fail/header-array", func() []string {
			p := valid()
			return []string{base64.RawURLEncoding.EncodeToString([]byte("[1]")) + p[strings.IndexByte(p, '.'):]}
		}, InvalidDPoPProof, ReasonMalformedProof},
		{"fail/crit", bent(func(h, c map[string]any) { h["crit"] = []string{"exp"} }), InvalidDPoPProof, ReasonMalformedProof},
		{"fail/iat-string", bent(func(h, c map[string]any) { c["iat"] = "1800000000" }), InvalidDPoPProof, ReasonMalformedProof},
		{"fail/htm-number", bent(func(h, c map[string]any) { c["htm"] = 1 }), InvalidDPoPProof, ReasonMalformedProof},
		// §4.3 item 3
		{"fail/no-typ", bent(func(h, c map[string]any) { delete(h, "typ") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/no-alg", bent(func(h, c map[string]any) { delete(h, "alg") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/no-jwk", bent(func(h, c map[string]any) { delete(h, "jwk") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/jwk-null", bent(func(h, c map[string]any) { h["jwk"] = nil }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/no-jti", bent(func(h, c map[string]any) { delete(c, "jti") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/empty-jti", bent(func(h, c map[string]any) { c["jti"] = "" }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/no-htm", bent(func(h, c map[string]any) { delete(c, "htm") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/no-htu", bent(func(h, c map[string]any) { delete(c, "htu") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/no-iat", bent(func(h, c map[string]any) { delete(c, "iat") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/no-ath", bent(func(h, c map[string]any) { delete(c, "ath") }), InvalidDPoPProof, ReasonMissingClaim},
		{"fail/jti-too-long", bent(func(h, c map[string]any) { c["jti"] = strings.Repeat("j", 257) }), InvalidDPoPProof, ReasonJTITooLong},
		// §4.3 item 4
		{"fail/typ-jwt", bent(func(h, c map[string]any) { h["typ"] = "JWT" }), InvalidDPoPProof, ReasonProofTyp},
		{"fail/typ-at+jwt", bent(func(h, c map[string]any) { h["typ"] = "at+jwt" }), InvalidDPoPProof, ReasonProofTyp},
		// §4.3 item 5
		{"fail/alg-none", func() []string {
			h, c := parts()
			h["alg"] = "none"
			p := sign(h, c)
			return []string{p[:strings.LastIndexByte(p, '.')+1] + "AA"}
		}, InvalidDPoPProof, ReasonProofAlg},
		{"fail/alg-HS256", func() []string {
			h, c := parts()
			h["alg"] = "HS256"
			h["jwk"] = map[string]any{"kty": "oct", "k": base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}
			return []string{signJWS(t, "HS256", []byte("0123456789abcdef0123456789abcdef"), h, c)}
		}, InvalidDPoPProof, ReasonProofAlg},
		{"fail/alg-not-in-policy", func() []string {
			k := newProofKey(t, "ES512", "es512")
			h, c := k.proofParts("POST", testURL, token, now)
			return []string{signJWS(t, k.alg, k.priv, h, c)}
		}, InvalidDPoPProof, ReasonProofAlg},
		// §4.3 item 6
		{"fail/jwk-garbage", bent(withJWK(map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})), InvalidDPoPProof, ReasonProofJWK},
		{"fail/jwk-string", bent(withJWK("a key")), InvalidDPoPProof, ReasonProofJWK},
		{"fail/jwk-symmetric", bent(withJWK(map[string]any{"kty": "oct", "k": "c2VjcmV0"})), InvalidDPoPProof, ReasonProofJWK},
		{"fail/jwk-rsa-for-es256", bent(withJWK(newProofKey(t, "RS256", "rsa").jwk)), InvalidDPoPProof, ReasonProofJWK},
		{"fail/jwk-p384-for-es256", bent(withJWK(newProofKey(t, "ES384", "p384").jwk)), InvalidDPoPProof, ReasonProofJWK},
		{"fail/signature-other-key", bent(withJWK(newProofKey(t, "ES256", "other").jwk)), InvalidDPoPProof, ReasonProofSignature},
		{"fail/signature-tampered", func() []string {
			p := strings.Split(valid(), ".")
			_, c := parts()
			c["htm"] = "GET"
			b, _ := json.Marshal(c)
			return []string{p[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + p[2]}
		}, InvalidDPoPProof, ReasonProofSignature},
		// §4.3 item 7
		{"fail/private-jwk", func() []string {
			priv, err := jwk.FromRaw(pk.priv)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(priv)
			var m map[string]any
			json.Unmarshal(b, &m)
			h, c := parts()
			h["jwk"] = m
			return []string{sign(h, c)}
		}, InvalidDPoPProof, ReasonPrivateJWK},
		// §4.3 item 8
		{"fail/htm-other", bent(func(h, c map[string]any) { c["htm"] = "GET" }), InvalidDPoPProof, ReasonHTMMismatch},
		{"fail/htm-lowercase", bent(func(h, c map[string]any) { c["htm"] = "post" }), InvalidDPoPProof, ReasonHTMMismatch},
		// §4.3 item 9
		{"fail/htu-other-path", bent(func(h, c map[string]any) { c["htu"] = "https://api.example.com/tools/delete" }), InvalidDPoPProof, ReasonHTUMismatch},
		{"fail/htu-other-host", bent(func(h, c map[string]any) { c["htu"] = "https://evil.example.com/tools/search" }), InvalidDPoPProof, ReasonHTUMismatch},
		{"fail/htu-other-port", bent(func(h, c map[string]any) { c["htu"] = "https://api.example.com:8443/tools/search" }), InvalidDPoPProof, ReasonHTUMismatch},
		{"fail/htu-http", bent(func(h, c map[string]any) { c["htu"] = "http://api.example.com/tools/search" }), InvalidDPoPProof, ReasonHTUMismatch},
		{"fail/htu-relative", bent(func(h, c map[string]any) { c["htu"] = "/tools/search" }), InvalidDPoPProof, ReasonHTUMismatch},
		// §4.3 item 11
		{"fail/iat-too-old", bent(func(h, c map[string]any) { c["iat"] = now.Add(-66 * time.Second).Unix() }), InvalidDPoPProof, ReasonIATTooOld},
		{"fail/iat-future", bent(func(h, c map[string]any) { c["iat"] = now.Add(6 * time.Second).Unix() }), InvalidDPoPProof, ReasonIATInFuture},
		{"fail/iat-negative", bent(func(h, c map[string]any) { c["iat"] = -1 }), InvalidDPoPProof, ReasonMalformedProof},
		{"fail/iat-huge", bent(func(h, c map[string]any) { c["iat"] = 1e300 }), InvalidDPoPProof, ReasonMalformedProof},
		// §4.3 item 12
		{"fail/ath-other-token", bent(func(h, c map[string]any) {
			sum := sha256.Sum256([]byte(otherToken))
			c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
		}), InvalidDPoPProof, ReasonATHMismatch},
		{"fail/ath-padded", bent(func(h, c map[string]any) { c["ath"] = c["ath"].(string) + "=" }), InvalidDPoPProof, ReasonATHMismatch},
		{"fail/ath-hex", bent(func(h, c map[string]any) { sum := sha256.Sum256([]byte(token)); c["ath"] = string(sum[:]) }), InvalidDPoPProof, ReasonATHMismatch},
		{"fail/jkt-other-key", func() []string {
			k := newProofKey(t, "ES256", "other")
			h, c := k.proofParts("POST", testURL, token, now)
			return []string{signJWS(t, k.alg, k.priv, h, c)}
		}, InvalidDPoPProof, ReasonJKTMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proofs := tc.proofs()
			req := dpopRequest(token, "", now)
			req.DPoP = proofs
			res, err := v.Verify(bg, req)
			noLeak(t, err, append([]string{token}, proofs...)...)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if res.Proof == nil || res.Proof.JKT != pk.jkt || res.Principal.JKT != pk.jkt {
					t.Fatalf("got proof %+v, want one bound to %s", res.Proof, pk.jkt)
				}
				return
			}
			wantCode(t, err, tc.code, tc.reason)
			if e := AsError(err); e.Scheme != "DPoP" {
				t.Fatalf("got scheme %q, want DPoP", e.Scheme)
			}
		})
	}
}

// TestProofAlgorithms: a real proof and token for every algorithm the
// issue names.
func TestProofAlgorithms(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"} {
		t.Run("ok/"+alg, func(t *testing.T) {
			ti := newTestIssuer(t)
			ti.addKey(t, "k-"+alg, alg)
			v := newTestVerifier(t, ti)
			pk := newProofKey(t, alg, "client")
			token := ti.token(t, "k-"+alg, ti.claims(pk.jkt, testNow))
			res, err := v.Verify(bg, dpopRequest(token, pk.proof(t, "POST", testURL, token, testNow), testNow))
			if err != nil {
				t.Fatalf("got %v, want success", err)
			}
			if res.Proof.JKT != pk.jkt || res.Proof.ReplayKey == "" {
				t.Fatalf("got %+v, want jkt %s and a replay key", res.Proof, pk.jkt)
			}
		})
	}
}

func TestReplayKey(t *testing.T) {
	a, b, c := replayKey("jkt1", "jti1"), replayKey("jkt2", "jti1"), replayKey("jkt1", "jti2")
	if a == b || a == c || len(a) != 22 {
		t.Fatalf("got %q %q %q, want three distinct 22-character keys", a, b, c)
	}
	if replayKey("jkt1", "jti1") != a {
		t.Fatalf("replay key is not deterministic")
	}
	// The separator keeps (ab, c) and (a, bc) apart.
	if replayKey("ab", "c") == replayKey("a", "bc") {
		t.Fatalf("got the same key for (ab, c) and (a, bc)")
	}
}

func TestNonces(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	src, err := NewNonceSource(secret, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewNonceSource([]byte(strings.Repeat("o", 32)), 5*time.Minute)
	replica, _ := NewNonceSource(secret, 5*time.Minute)
	_, v, pk, token := boundSetup(t, "ES256", func(o *Options) { o.Nonces = src })

	fresh := src.Nonce(testNow)
	if got := src.Nonce(testNow.Add(10 * time.Second)); got != fresh {
		t.Fatalf("nonce changed within one step: %q then %q", fresh, got)
	}
	if got := src.Nonce(testNow.Add(2 * time.Minute)); got == fresh {
		t.Fatalf("nonce did not rotate after two minutes")
	}
	for _, tc := range []struct {
		name   string
		nonce  any
		code   Code
		reason Reason
	}{
		{"ok/fresh", fresh, "", ""},
		{"ok/from-replica", replica.Nonce(testNow), "", ""},
		{"ok/three-minutes-old", src.Nonce(testNow.Add(-3 * time.Minute)), "", ""},
		{"fail/missing", nil, UseDPoPNonce, ReasonMissingNonce},
		{"fail/empty", "", UseDPoPNonce, ReasonMissingNonce},
		{"fail/stale", src.Nonce(testNow.Add(-6 * time.Minute)), UseDPoPNonce, ReasonStaleNonce},
		{"fail/future", src.Nonce(testNow.Add(3 * time.Minute)), UseDPoPNonce, ReasonStaleNonce},
		{"fail/other-secret", other.Nonce(testNow), UseDPoPNonce, ReasonStaleNonce},
		{"fail/garbage", "not-a-nonce", UseDPoPNonce, ReasonStaleNonce},
		{"fail/flipped-bit", flip(fresh), UseDPoPNonce, ReasonStaleNonce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, c := pk.proofParts("POST", testURL, token, testNow)
			if tc.nonce != nil {
				c["nonce"] = tc.nonce
			}
			_, err := v.Verify(bg, dpopRequest(token, signJWS(t, pk.alg, pk.priv, h, c), testNow))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			wantCode(t, err, tc.code, tc.reason)
		})
	}
	if got := v.Nonce(testNow); got != fresh {
		t.Fatalf("Verifier.Nonce = %q, want %q", got, fresh)
	}
	if _, err := NewNonceSource([]byte("short"), time.Minute); err == nil {
		t.Fatalf("a 5-byte secret was accepted")
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[len(b)-2] == 'A' {
		b[len(b)-2] = 'B'
	} else {
		b[len(b)-2] = 'A'
	}
	return string(b)
}

// TestVerifyProofWithoutToken: at a token endpoint a proof has no ath and
// binds nothing yet; every other check still applies.
func TestVerifyProofWithoutToken(t *testing.T) {
	ti := newTestIssuer(t)
	v := newTestVerifier(t, ti)
	pk := newProofKey(t, "ES256", "client")
	const tokenURL = "https://as.example.com/token"
	h, c := pk.proofParts("POST", tokenURL, "", testNow)
	delete(c, "ath")
	p, err := v.VerifyProof([]string{signJWS(t, pk.alg, pk.priv, h, c)}, "POST", tokenURL, testNow)
	if err != nil || p.JKT != pk.jkt || p.ReplayKey == "" {
		t.Fatalf("got %+v, %v; want the proof accepted, bound to %s", p, err, pk.jkt)
	}
	c["htm"] = "GET"
	_, err = v.VerifyProof([]string{signJWS(t, pk.alg, pk.priv, h, c)}, "POST", tokenURL, testNow)
	wantCode(t, err, InvalidDPoPProof, ReasonHTMMismatch)
	_, err = v.VerifyProof(nil, "POST", tokenURL, testNow)
	wantCode(t, err, InvalidDPoPProof, ReasonMissingProof)
}
