package auth

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"testing"
)

// BenchmarkP256Verify is the floor: one raw ecdsa.Verify on P-256, the
// signature check every DPoP request needs at least once. The other
// benchmarks are read as ratios to it (see README, Performance).
func BenchmarkP256Verify(b *testing.B) {
	k := testKey(b, "ES256", "bench").(*ecdsa.PrivateKey)
	hash := sha256.Sum256([]byte("eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0"))
	r, s, err := ecdsa.Sign(rand.Reader, k, hash[:])
	if err != nil {
		b.Fatal(err)
	}
	rb, sb := r.Bytes(), s.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.Verify(&k.PublicKey, hash[:], new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)) {
			b.Fatal("verify failed")
		}
	}
}

func benchFixture(b *testing.B) (*Verifier, string, string) {
	ti := newTestIssuerAt(b, "https://issuer.test")
	ti.addKey(b, "k1", "ES256")
	v := newTestVerifier(b, ti, func(o *Options) { o.HTTPClient = inMemory(ti.handler) })
	pk := newProofKey(b, "ES256", "client")
	token := ti.token(b, "k1", ti.claims(pk.jkt, testNow))
	proof := pk.proof(b, "POST", testURL, token, testNow)
	if _, err := v.Verify(bg, dpopRequest(token, proof, testNow)); err != nil {
		b.Fatal(err)
	}
	return v, token, proof
}

// BenchmarkTokenVerifyCold: an access token checked from scratch (no cache).
func BenchmarkTokenVerifyCold(b *testing.B) {
	v, token, _ := benchFixture(b)
	v.tokens = nil
	sum := sha256.Sum256([]byte(token))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.verifyToken(bg, token, sum, nil, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenVerifyCached: the same token again (hash and cache lookup).
func BenchmarkTokenVerifyCached(b *testing.B) {
	v, token, _ := benchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		sum := sha256.Sum256([]byte(token))
		if _, err := v.verifyToken(bg, token, sum, nil, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProofES256: every §4.3 check of one ES256 proof.
func BenchmarkProofES256(b *testing.B) {
	v, token, proof := benchFixture(b)
	htu, _ := NormalizeHTU(testURL)
	sum := sha256.Sum256([]byte(token))
	res, _ := v.Verify(bg, dpopRequest(token, proof, testNow))
	in := proofInput{headers: []string{proof}, method: "POST", htu: htu, ath: sum, jkt: res.Principal.JKT, now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.checkProof(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyDPoP: the whole Verify of a DPoP request with a cached
// token: Authorization parsing, token cache, htu, proof.
func BenchmarkVerifyDPoP(b *testing.B) {
	v, token, proof := benchFixture(b)
	req := dpopRequest(token, proof, testNow)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(bg, req); err != nil {
			b.Fatal(err)
		}
	}
}
