package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// minNonceSecret is the shortest secret NewNonceSource accepts: 256 bits,
// the HMAC-SHA256 block of security.
const minNonceSecret = 32

// nonceLen is the decoded size of a nonce: an 8-byte timestamp and a 16-byte
// truncated HMAC-SHA256 (128 bits, RFC 2104 §5 allows truncation to half).
const nonceLen = 8 + 16

// NonceSource mints and checks stateless DPoP server nonces (RFC 9449 §9).
// A nonce is base64url(t || HMAC-SHA256(secret, "dpop-nonce" || t)[:16]),
// with t the Unix second it was minted, rounded down to a quarter of the
// lifetime so every request within that quarter gets the same nonce. Any
// replica holding the same secret checks any replica's nonces; rotating is
// automatic (a nonce is valid for its lifetime after t) and needs no store.
//
// A NonceSource is safe for concurrent use.
type NonceSource struct {
	secret   []byte
	lifetime time.Duration
	step     int64 // seconds between two distinct nonces

	mu      sync.Mutex
	curStep int64
	cur     string
}

// NewNonceSource returns a source whose nonces stay valid for lifetime
// (at least 4 seconds). The secret must hold at least 32 bytes.
func NewNonceSource(secret []byte, lifetime time.Duration) (*NonceSource, error) {
	if len(secret) < minNonceSecret {
		return nil, errors.New("nonce secret must hold at least 32 bytes")
	}
	if lifetime < 4*time.Second {
		return nil, errors.New("nonce lifetime must be at least 4s")
	}
	return &NonceSource{
		secret:   append([]byte(nil), secret...),
		lifetime: lifetime,
		step:     int64(lifetime/time.Second) / 4,
		curStep:  -1,
	}, nil
}

// Nonce returns the nonce to hand out at now (in a DPoP-Nonce header).
func (n *NonceSource) Nonce(now time.Time) string {
	step := now.Unix() / n.step
	n.mu.Lock()
	defer n.mu.Unlock()
	if step != n.curStep {
		n.curStep, n.cur = step, n.mint(step*n.step)
	}
	return n.cur
}

func (n *NonceSource) mint(t int64) string {
	var b [nonceLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t))
	mac := n.mac(b[:8])
	copy(b[8:], mac[:16])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (n *NonceSource) mac(t []byte) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write([]byte("dpop-nonce"))
	m.Write(t)
	return m.Sum(nil)
}

// Valid reports whether s is a nonce this source (or another holding the
// same secret) minted no longer than lifetime before now. A nonce minted up
// to one step (a quarter of the lifetime) after now is accepted too: it comes
// from a replica whose clock runs ahead.
func (n *NonceSource) Valid(s string, now time.Time) bool {
	var b [nonceLen]byte
	if base64.RawURLEncoding.EncodedLen(nonceLen) != len(s) {
		return false
	}
	if k, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s)); err != nil || k != nonceLen {
		return false
	}
	if !hmac.Equal(b[8:], n.mac(b[:8])[:16]) {
		return false
	}
	t := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	age := now.Sub(t)
	return age > -time.Duration(n.step)*time.Second && age < n.lifetime
}
