package auth

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"hash/maphash"
	"sync"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

const jwkCacheShards = 16

// proofJWK is the jwk header of a proof, parsed by jwx and checked once.
type proofJWK struct {
	raw     any    // the public key, valid (validPublicKey)
	jkt     string // RFC 7638 SHA-256 thumbprint, base64url
	private bool   // the JWK held private members (§4.3 item 7)
}

// jwkCache remembers parsed proof keys by their exact JSON bytes. A client
// signs every proof with the same key, so parsing, point validation and the
// thumbprint are paid once per key instead of once per request. Equal bytes
// parse to an equal key, so a hit changes no outcome. At most max entries;
// a full shard drops an arbitrary entry.
//
// Safe for concurrent use.
type jwkCache struct {
	seed     maphash.Seed
	perShard int
	shards   [jwkCacheShards]struct {
		mu sync.RWMutex
		m  map[string]*proofJWK
	}
}

func newJWKCache(size int) *jwkCache {
	c := &jwkCache{seed: maphash.MakeSeed(), perShard: max(1, size/jwkCacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*proofJWK)
	}
	return c
}

// parse returns the key for the jwk JSON b, from the cache or parsed now.
// It returns nil when b is not a valid asymmetric public (or private) key.
func (c *jwkCache) parse(b []byte) *proofJWK {
	s := &c.shards[maphash.Bytes(c.seed, b)%jwkCacheShards]
	s.mu.RLock()
	k, ok := s.m[string(b)]
	s.mu.RUnlock()
	if ok {
		return k
	}
	k = parseProofJWK(b)
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[string(b)] = k
	s.mu.Unlock()
	return k
}

func parseProofJWK(b []byte) *proofJWK {
	key, err := jwk.ParseKey(b)
	if err != nil {
		return nil
	}
	raw, err := jwk.PublicRawKeyOf(key)
	if err != nil || !validPublicKey(raw) {
		return nil
	}
	private, err := jwk.IsPrivateKey(key)
	if err != nil {
		return nil
	}
	private = private || hasPrivateMember(b)
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil
	}
	return &proofJWK{raw: raw, jkt: base64.RawURLEncoding.EncodeToString(tp), private: private}
}

// privateMembers are the members of a private JWK (RFC 7518 §6.2.2 and
// §6.3.2, RFC 8037 §2). jwk.IsPrivateKey looks for d alone, but an RSA
// key's primes (p, q) are its private key without d.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth"}

// hasPrivateMember reports whether the JWK JSON b has a private member.
func hasPrivateMember(b []byte) bool {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return true
	}
	for _, name := range privateMembers {
		if _, ok := members[name]; ok {
			return true
		}
	}
	return false
}
