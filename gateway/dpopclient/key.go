// Package dpopclient is the client side of DPoP (RFC 9449): a key, the
// proofs it signs, and an http.RoundTripper that adds a fresh proof to every
// request. Go programs that call DPoP-protected APIs (through dpopgate or
// any other resource server) can import it; dpopgate's CLI and tests use it.
package dpopclient

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Algorithms lists the proof algorithms a Key can be generated for.
var Algorithms = []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}

// Key is a DPoP key pair. It is safe for concurrent use.
type Key struct {
	alg     string
	private jwk.Key // with alg set
	public  jwk.Key
	jwk     json.RawMessage // the public JWK as it goes into proofs
	jkt     string
}

// GenerateKey makes a new key for alg (one of Algorithms).
func GenerateKey(alg string) (*Key, error) {
	var raw crypto.Signer
	var err error
	switch alg {
	case "ES256":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		raw, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	case "RS256", "PS256":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("dpopclient: algorithm %q is not one of %v", alg, Algorithms)
	}
	if err != nil {
		return nil, err
	}
	k, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
		return nil, err
	}
	return newKey(k)
}

// ParseKey reads a private JWK, as MarshalJSON writes it. Its "alg" member
// names the proof algorithm; without one, EC keys use ES256/ES384 by curve,
// Ed25519 keys EdDSA and RSA keys RS256.
func ParseKey(b []byte) (*Key, error) {
	k, err := jwk.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("dpopclient: not a JWK: %w", err)
	}
	if private, err := jwk.IsPrivateKey(k); err != nil || !private {
		return nil, errors.New("dpopclient: the JWK holds no private key")
	}
	return newKey(k)
}

func newKey(priv jwk.Key) (*Key, error) {
	alg := priv.Algorithm().String()
	if alg == "" {
		alg = defaultAlg(priv)
		if err := priv.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, err
		}
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{jwk.AlgorithmKey, jwk.KeyIDKey, jwk.KeyUsageKey, jwk.KeyOpsKey} {
		pub.Remove(name) // a proof's jwk carries the key, nothing else
	}
	b, err := json.Marshal(pub)
	if err != nil {
		return nil, err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	k := &Key{alg: alg, private: priv, public: pub, jwk: b, jkt: base64.RawURLEncoding.EncodeToString(tp)}
	// Sign once now, so a key that cannot sign under alg fails here.
	if _, err := k.Proof("GET", "https://check.invalid/", "", "", time.Now()); err != nil {
		return nil, fmt.Errorf("dpopclient: key cannot sign %s: %w", alg, err)
	}
	return k, nil
}

func defaultAlg(k jwk.Key) string {
	switch k.KeyType() {
	case jwa.OKP:
		return "EdDSA"
	case jwa.RSA:
		return "RS256"
	}
	if crv, ok := k.Get("crv"); ok && fmt.Sprint(crv) == "P-384" {
		return "ES384"
	}
	return "ES256"
}

// Algorithm is the key's proof algorithm.
func (k *Key) Algorithm() string { return k.alg }

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key,
// base64url: the value of cnf.jkt in tokens bound to it, and of the
// dpop_jkt authorization request parameter.
func (k *Key) Thumbprint() string { return k.jkt }

// PublicJWK is the public key as a JWK.
func (k *Key) PublicJWK() json.RawMessage { return k.jwk }

// MarshalJSON writes the private key as a JWK (keep it secret).
func (k *Key) MarshalJSON() ([]byte, error) { return json.Marshal(k.private) }

// Proof signs a DPoP proof (RFC 9449 §4.2) for one request: method and URL
// (its query and fragment are left out of htu), with ath when accessToken is
// set and nonce when the server asked for one.
func (k *Key) Proof(method, url, accessToken, nonce string, now time.Time) (string, error) {
	htu := url
	for i := 0; i < len(htu); i++ {
		if htu[i] == '?' || htu[i] == '#' {
			htu = htu[:i]
			break
		}
	}
	claims := map[string]any{
		"jti": newJTI(),
		"htm": method,
		"htu": htu,
		"iat": now.Unix(),
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	h.Set(jws.TypeKey, "dpop+jwt")
	h.Set(jws.JWKKey, k.public)
	out, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(k.alg), k.private, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// newJTI returns 128 random bits, base64url (RFC 9449 §4.2 asks for at
// least 96).
func newJTI() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
