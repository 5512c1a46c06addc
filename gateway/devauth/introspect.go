package devauth

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// storeOpaque keeps the claims of a new opaque token and returns it.
func (s *Server) storeOpaque(claims map[string]any, now time.Time) (string, error) {
	tok := "opq_" + randomString(24)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.opaque) >= maxTokens {
		s.sweep(now)
		if len(s.opaque) >= maxTokens {
			return "", errors.New("too many live opaque tokens")
		}
	}
	s.opaque[sha256.Sum256([]byte(tok))] = claims
	return tok, nil
}

// sweep drops expired opaque tokens and revocations. Called with s.mu held.
func (s *Server) sweep(now time.Time) {
	for k, c := range s.opaque {
		if exp, _ := c["exp"].(int64); exp <= now.Unix() {
			delete(s.opaque, k)
		}
	}
	for k, exp := range s.revoked {
		if !exp.After(now) {
			delete(s.revoked, k)
		}
	}
}

// claimsOf returns the claims of a token this server issued and has not
// revoked, or nil: an opaque token from the store, or a JWT it signed.
func (s *Server) claimsOf(tok string, now time.Time) map[string]any {
	sum := sha256.Sum256([]byte(tok))
	s.mu.Lock()
	_, revoked := s.revoked[sum]
	c, opaque := s.opaque[sum]
	s.mu.Unlock()
	if revoked {
		return nil
	}
	if !opaque {
		pub, err := s.key.PublicKey()
		if err != nil {
			return nil
		}
		payload, err := jws.Verify([]byte(tok), jws.WithKey(jwa.ES256, pub))
		if err != nil || json.Unmarshal(payload, &c) != nil {
			return nil
		}
	}
	exp, _ := c["exp"].(float64)
	if e, ok := c["exp"].(int64); ok {
		exp = float64(e)
	}
	if exp <= float64(now.Unix()) {
		return nil
	}
	return c
}

// introspect is RFC 7662 token introspection, for authenticated clients.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) {
		return
	}
	if c, ok := s.authenticate(r); !ok || c.Secret == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="devauth"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client", "introspection needs a confidential client")
		return
	}
	claims := s.claimsOf(r.PostForm.Get("token"), s.opts.Clock())
	if claims == nil {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	out := map[string]any{"active": true, "token_type": "DPoP"}
	for k, v := range claims {
		out[k] = v
	}
	writeJSON(w, http.StatusOK, out)
}

// revoke is RFC 7009 token revocation: the token is inactive from now on.
// As the RFC asks, an unknown token is answered 200 too.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) {
		return
	}
	client, ok := s.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="devauth"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	now := s.opts.Clock()
	tok := r.PostForm.Get("token")
	// A client revokes its own tokens only (RFC 7009 §2.1).
	if c := s.claimsOf(tok, now); c != nil && c["client_id"] == client.ID {
		s.mu.Lock()
		if len(s.revoked) >= maxTokens {
			s.sweep(now)
		}
		if len(s.revoked) < maxTokens {
			s.revoked[sha256.Sum256([]byte(tok))] = now.Add(s.opts.TokenTTL)
		}
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}
