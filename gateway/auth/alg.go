package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// minRSABits is the smallest RSA modulus accepted, for tokens and proofs
// alike (RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used").
const minRSABits = 2048

// algorithm is one asymmetric JWS algorithm we accept: the key it needs and
// jwx's verifier for it. The table is the only place algorithm names become
// behaviour; "none" and the HMAC family are not in it, so no configuration
// can enable them.
type algorithm struct {
	name     string
	verifier jws.Verifier
	// keyOK reports whether a raw public key is of the type and size the
	// algorithm needs (an RSA key for RS256, a P-256 key for ES256...).
	keyOK func(any) bool
}

var algorithms = map[string]*algorithm{}

func init() {
	ec := func(c elliptic.Curve) func(any) bool {
		return func(k any) bool {
			pk, ok := k.(*ecdsa.PublicKey)
			return ok && pk.Curve == c
		}
	}
	rsaOK := func(k any) bool {
		pk, ok := k.(*rsa.PublicKey)
		return ok && pk.N != nil && pk.N.BitLen() >= minRSABits
	}
	edOK := func(k any) bool {
		pk, ok := k.(ed25519.PublicKey)
		return ok && len(pk) == ed25519.PublicKeySize
	}
	for name, keyOK := range map[string]func(any) bool{
		"ES256": ec(elliptic.P256()), "ES384": ec(elliptic.P384()), "ES512": ec(elliptic.P521()),
		"RS256": rsaOK, "RS384": rsaOK, "RS512": rsaOK,
		"PS256": rsaOK, "PS384": rsaOK, "PS512": rsaOK,
		"EdDSA": edOK,
	} {
		v, err := jws.NewVerifier(jwa.SignatureAlgorithm(name))
		if err != nil {
			panic(fmt.Sprintf("auth: jwx has no verifier for %s: %v", name, err))
		}
		algorithms[name] = &algorithm{name: name, verifier: v, keyOK: keyOK}
	}
}

// algSet is an allow-list of algorithms, built once from config.
type algSet map[string]*algorithm

func newAlgSet(names []string) (algSet, error) {
	s := algSet{}
	for _, n := range names {
		a, ok := algorithms[n]
		if !ok {
			return nil, fmt.Errorf("algorithm %q is not an asymmetric JWS algorithm we support", n)
		}
		s[n] = a
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("no algorithms allowed")
	}
	return s, nil
}

// validPublicKey reports whether raw is a public key worth verifying with:
// an EC point on its curve, an RSA modulus of at least minRSABits, an
// Ed25519 key of the right size. Keys are checked once, when parsed.
func validPublicKey(raw any) bool {
	switch k := raw.(type) {
	case *ecdsa.PublicKey:
		_, err := k.ECDH() // fails for a point off the curve
		return err == nil
	case *rsa.PublicKey:
		return k.N != nil && k.N.BitLen() >= minRSABits && k.E > 1
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize
	}
	return false
}

// verify checks sig over input with key under alg, after checking the key
// suits the algorithm (a P-384 key never verifies ES256, an RSA key never
// HS256, because HS256 is not in the table).
func (a *algorithm) verify(input string, sig []byte, key any) error {
	if !a.keyOK(key) {
		return fmt.Errorf("key %T does not suit %s", key, a.name)
	}
	return a.verifier.Verify([]byte(input), sig, key)
}
