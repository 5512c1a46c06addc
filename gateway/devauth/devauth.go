// Package devauth is a development authorization server, for `dpopgate
// dev` and tests: RFC 8414 metadata, a JWKS, a client_credentials token
// endpoint that requires a DPoP proof and issues RFC 9068 access tokens
// bound to the proof's key (cnf.jkt), and RFC 7591 dynamic client
// registration. It keeps everything in memory and is not for production.
package devauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/replay"
)

// Client is a registered OAuth client.
type Client struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret,omitempty"` // "" for a public client (auth method none)
	Name   string `json:"client_name,omitempty"`
	Scope  string `json:"scope"`          // the scopes it may ask for, space-separated
	Tier   string `json:"tier,omitempty"` // the tier claim of its tokens
	// Opaque clients get opaque access tokens, which resource servers
	// must introspect; the others get RFC 9068 JWTs.
	Opaque bool `json:"-"`
	// Bearer clients get unbound bearer tokens, without a DPoP proof
	// (for routes with dpop: optional, and for comparisons).
	Bearer bool `json:"-"`
}

// Options configure a Server.
type Options struct {
	// Issuer is the server's own URL (its iss), e.g. http://127.0.0.1:8081.
	Issuer string
	// Audience is the aud of tokens when the request names no resource.
	Audience string
	// Clients are registered from the start.
	Clients []Client
	// Scopes are what dynamic registration may grant (default: the union of
	// the preset clients' scopes).
	Scopes []string
	// TokenTTL is the access tokens' lifetime (default 10m).
	TokenTTL time.Duration
	// Clock gives the time (default time.Now).
	Clock func() time.Time
}

// maxClients bounds dynamic registration.
const maxClients = 1000

// Server is the development authorization server. It is an http.Handler,
// safe for concurrent use.
type Server struct {
	opts   Options
	key    jwk.Key
	proofs *auth.Verifier
	seen   *replay.Memory
	mux    *http.ServeMux

	mu      sync.Mutex
	clients map[string]*Client
	opaque  map[[32]byte]map[string]any // opaque token hash -> its claims
	revoked map[[32]byte]time.Time      // token hash -> its exp
}

// maxTokens bounds the opaque tokens and revocations held in memory.
const maxTokens = 100_000

// New builds a server with a fresh ES256 signing key.
func New(opts Options) (*Server, error) {
	if opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("devauth: Issuer and Audience are required")
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 10 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	key.Set(jwk.KeyIDKey, "dev-"+randomString(6))
	key.Set(jwk.AlgorithmKey, jwa.ES256)
	key.Set(jwk.KeyUsageKey, "sig")
	proofs, err := auth.New(auth.Options{
		DPoPAlgorithms: []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"},
		MaxAge:         time.Minute,
		ClockSkew:      5 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		key:     key,
		proofs:  proofs,
		seen:    replay.NewMemory(replay.MemoryOptions{MaxEntries: 100_000, Clock: opts.Clock}),
		clients: make(map[string]*Client),
		opaque:  make(map[[32]byte]map[string]any),
		revoked: make(map[[32]byte]time.Time),
	}
	scopes := map[string]bool{}
	for _, c := range opts.Clients {
		c := c
		s.clients[c.ID] = &c
		for _, sc := range strings.Fields(c.Scope) {
			scopes[sc] = true
		}
	}
	if len(s.opts.Scopes) == 0 {
		for sc := range scopes {
			s.opts.Scopes = append(s.opts.Scopes, sc)
		}
		slices.Sort(s.opts.Scopes)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.metadata)
	s.mux.HandleFunc("GET /.well-known/openid-configuration", s.metadata)
	s.mux.HandleFunc("GET /jwks", s.jwks)
	s.mux.HandleFunc("POST /token", s.token)
	s.mux.HandleFunc("POST /register", s.register)
	s.mux.HandleFunc("POST /introspect", s.introspect)
	s.mux.HandleFunc("POST /revoke", s.revoke)
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// TokenEndpoint is the URL of the token endpoint (the htu of its proofs).
func (s *Server) TokenEndpoint() string { return s.opts.Issuer + "/token" }

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.opts.Issuer,
		"token_endpoint":                        s.TokenEndpoint(),
		"jwks_uri":                              s.opts.Issuer + "/jwks",
		"registration_endpoint":                 s.opts.Issuer + "/register",
		"introspection_endpoint":                s.opts.Issuer + "/introspect",
		"revocation_endpoint":                   s.opts.Issuer + "/revoke",
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"dpop_signing_alg_values_supported":     s.proofs.ProofAlgorithms(),
		"scopes_supported":                      s.opts.Scopes,
	})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	pub, err := s.key.PublicKey()
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	set := jwk.NewSet()
	set.AddKey(pub)
	writeJSON(w, http.StatusOK, set)
}

// token is the client_credentials grant (RFC 6749 §4.4) with a mandatory
// DPoP proof (RFC 9449 §5): the token is bound to the proof's key.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) {
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	client, ok := s.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="devauth"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	now := s.opts.Clock()
	var proof auth.Proof
	if !client.Bearer {
		var err error
		proof, err = s.proofs.VerifyProof(r.Header.Values("DPoP"), r.Method, s.TokenEndpoint(), now)
		if err != nil {
			desc := "a valid DPoP proof for this endpoint is required"
			if e := auth.AsError(err); e != nil {
				desc = fmt.Sprintf("DPoP proof refused (%s)", e.Reason)
			}
			oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", desc)
			return
		}
		if err := s.seen.Claim(r.Context(), proof.ReplayKey, 2*time.Minute); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", "DPoP proof already used")
			return
		}
	}
	scope := client.Scope
	if req := r.PostForm.Get("scope"); req != "" {
		for _, sc := range strings.Fields(req) {
			if !slices.Contains(strings.Fields(client.Scope), sc) {
				oauthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not granted to this client", sc))
				return
			}
		}
		scope = strings.Join(strings.Fields(req), " ")
	}
	aud := s.opts.Audience
	if res := r.PostForm.Get("resource"); res != "" {
		if !strings.HasPrefix(res, s.opts.Audience) {
			oauthError(w, http.StatusBadRequest, "invalid_target", "unknown resource")
			return
		}
		aud = res
	}
	claims := map[string]any{
		"iss":       s.opts.Issuer,
		"sub":       client.ID,
		"aud":       aud,
		"client_id": client.ID,
		"scope":     scope,
		"iat":       now.Unix(),
		"exp":       now.Add(s.opts.TokenTTL).Unix(),
		"jti":       randomString(16),
	}
	tokenType := "Bearer"
	if !client.Bearer {
		claims["cnf"] = map[string]string{"jkt": proof.JKT}
		tokenType = "DPoP"
	}
	if client.Tier != "" {
		claims["tier"] = client.Tier
	}
	var tok string
	var err error
	if client.Opaque {
		tok, err = s.storeOpaque(claims, now)
	} else {
		tok, err = s.sign(claims)
	}
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   tokenType,
		"expires_in":   int(s.opts.TokenTTL.Seconds()),
		"scope":        scope,
	})
}

// authenticate finds the client: HTTP Basic (client_secret_basic), form
// fields (client_secret_post), or a public client's bare client_id.
func (s *Server) authenticate(r *http.Request) (*Client, bool) {
	id, secret, basic := r.BasicAuth()
	if basic { // RFC 6749 §2.3.1: both form-encoded before Basic
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.Lock()
	c := s.clients[id]
	s.mu.Unlock()
	if c == nil || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return nil, false
	}
	return c, true
}

// sign makes an RFC 9068 access token: typ at+jwt, ES256, kid.
func (s *Server) sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	h.Set(jws.TypeKey, "at+jwt")
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, s.key, jws.WithProtectedHeaders(h)))
	return string(out), err
}

// register is RFC 7591 dynamic client registration, for client_credentials
// clients: public ("none") or with a generated secret.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name       string   `json:"client_name"`
		AuthMethod string   `json:"token_endpoint_auth_method"`
		GrantTypes []string `json:"grant_types"`
		Scope      string   `json:"scope"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "the body is not client metadata JSON")
		return
	}
	for _, g := range req.GrantTypes {
		if g != "client_credentials" {
			oauthError(w, http.StatusBadRequest, "invalid_client_metadata", fmt.Sprintf("grant type %q is not supported", g))
			return
		}
	}
	c := &Client{ID: "dyn-" + randomString(9), Name: req.Name, Scope: strings.Join(s.opts.Scopes, " ")}
	switch req.AuthMethod {
	case "none":
	case "", "client_secret_basic", "client_secret_post":
		c.Secret = randomString(24)
		if req.AuthMethod == "" {
			req.AuthMethod = "client_secret_basic"
		}
	default:
		oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
		return
	}
	if req.Scope != "" {
		for _, sc := range strings.Fields(req.Scope) {
			if !slices.Contains(s.opts.Scopes, sc) {
				oauthError(w, http.StatusBadRequest, "invalid_client_metadata", fmt.Sprintf("scope %q is not offered", sc))
				return
			}
		}
		c.Scope = strings.Join(strings.Fields(req.Scope), " ")
	}
	s.mu.Lock()
	full := len(s.clients) >= maxClients
	if !full {
		s.clients[c.ID] = c
	}
	s.mu.Unlock()
	if full {
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "too many registered clients")
		return
	}
	out := map[string]any{
		"client_id":                  c.ID,
		"client_id_issued_at":        s.opts.Clock().Unix(),
		"client_name":                c.Name,
		"token_endpoint_auth_method": req.AuthMethod,
		"grant_types":                []string{"client_credentials"},
		"scope":                      c.Scope,
	}
	if c.Secret != "" {
		out["client_secret"] = c.Secret
	}
	writeJSON(w, http.StatusCreated, out)
}

// readForm parses a form body of at most 64 KiB, answering 400 when it
// cannot.
func readForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// oauthError writes an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
