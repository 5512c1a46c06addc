package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// IntrospectionOptions configures token introspection (RFC 7662) at one
// issuer: for tokens that are not JWTs, and for every token on routes that
// ask for it (to see revocations before exp).
type IntrospectionOptions struct {
	Endpoint string // "" to take introspection_endpoint from the metadata
	ClientID string
	// ClientSecret authenticates with client_secret_basic; PrivateKey, when
	// set, with private_key_jwt (RFC 7523) instead.
	ClientSecret string
	PrivateKey   jwk.Key
	// CacheTTL bounds how long an active answer is reused (never past the
	// token's exp); NegativeCacheTTL how long an inactive one is. Zero
	// disables that cache.
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
	Timeout          time.Duration // one call; default 5s
}

// introspectOpaque asks the issuers that introspect, in config order, about
// a token that is not a JWT; the first that knows it as active wins. Only
// the allowed issuers (nil: all) see the token: an issuer learns nothing
// of another's tokens from a route that does not take that issuer.
func (v *Verifier) introspectOpaque(ctx context.Context, token string, sum [32]byte, allowed []string, now time.Time) (*Principal, error) {
	last := error(tokenError(ReasonMalformedToken, "not a JWT, and no issuer this route takes can introspect it"))
	for _, iss := range v.introspecting {
		if allowed != nil && !slices.Contains(allowed, iss.name) {
			continue
		}
		p, err := iss.intro.check(ctx, v, iss, token, sum, now)
		if err == nil {
			return p, nil
		}
		if e := AsError(err); e != nil && e.Code == TemporarilyUnavailable {
			return nil, err // cannot tell: never guess
		}
		last = err
	}
	return nil, last
}

// introspectJWT asks the issuer of a verified JWT whether it is still
// active (a route with introspect: true). A JWT from an issuer without
// introspection cannot be checked, and is refused.
func (v *Verifier) introspectJWT(ctx context.Context, p *Principal, token string, sum [32]byte, now time.Time) (*Principal, error) {
	iss := v.issuers[p.Issuer]
	in := iss.intro
	if in == nil {
		return nil, tokenError(ReasonNotIntrospectable, "this route asks the issuer about every token, and %s offers no introspection", p.Issuer)
	}
	if _, err := in.check(ctx, v, iss, token, sum, now); err != nil {
		return nil, err
	}
	return p, nil
}

// introspector asks one issuer about tokens, with a cache by token SHA-256
// and one call in flight per token.
type introspector struct {
	opts    IntrospectionOptions
	client  *http.Client
	observe func(issuer string, err error)
	cache   *sumCache[introspected]
	flight  flight[introspected]

	mu       sync.Mutex
	endpoint string
}

// introspected is one answer: a principal, or why the token is refused.
type introspected struct {
	p   *Principal
	err *Error
}

// introspectionClaims is an RFC 7662 §2.2 answer: the claims of a JWT access
// token, plus active.
type introspectionClaims struct {
	Active    *bool  `json:"active"`
	TokenType string `json:"token_type"`
	tokenClaims
}

// check returns the principal of an active token, the reason it is refused,
// or temporarily_unavailable when the endpoint cannot answer and nothing is
// cached.
func (in *introspector) check(ctx context.Context, v *Verifier, iss *issuer, token string, sum [32]byte, now time.Time) (*Principal, error) {
	if r, ok := in.cache.get(sum, now); ok {
		return r.result()
	}
	r, err := in.flight.do(ctx, sum, func(ctx context.Context) (introspected, error) {
		// A flight that ended between the look above and this one has
		// cached its answer: no second call for it.
		if r, ok := in.cache.get(sum, now); ok {
			return r, nil
		}
		ctx, cancel := context.WithTimeout(ctx, in.opts.Timeout)
		defer cancel()
		r, err := in.call(ctx, v, iss, token, now)
		if in.observe != nil {
			in.observe(iss.name, err)
		}
		if err != nil {
			return introspected{}, err
		}
		switch {
		case r.p != nil:
			in.cache.put(sum, r, minTime(r.p.Expiry, now.Add(in.opts.CacheTTL)), now)
		default:
			in.cache.put(sum, r, now.Add(in.opts.NegativeCacheTTL), now)
		}
		return r, nil
	})
	if err != nil {
		return nil, &Error{Code: TemporarilyUnavailable, Reason: ReasonIntrospectionUnavailable,
			Err: fmt.Errorf("introspection at %s: %w", iss.name, err)}
	}
	return r.result()
}

func (r introspected) result() (*Principal, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.p, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// call makes one RFC 7662 §2.1 request and judges the answer. An error
// means no usable answer (network, status, body); a refused token is an
// introspected with err set.
func (in *introspector) call(ctx context.Context, v *Verifier, iss *issuer, token string, now time.Time) (introspected, error) {
	endpoint, err := in.resolve(ctx, iss.name)
	if err != nil {
		return introspected{}, err
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return introspected{}, err
	}
	if in.opts.PrivateKey != nil {
		assertion, err := in.clientAssertion(endpoint, now)
		if err != nil {
			return introspected{}, err
		}
		form.Set("client_id", in.opts.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	} else {
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(in.opts.ClientID), url.QueryEscape(in.opts.ClientSecret))
	}
	body := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// No redirects: a 3xx would turn the POST into a GET without the
	// token, and its answer would be about nothing we asked.
	client := *in.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return introspected{}, hideURL(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return introspected{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return introspected{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	if len(raw) > maxMetadataBytes {
		return introspected{}, errors.New("answer too large")
	}
	// RFC 7662 §2.2: a JSON object in application/json.
	if mt, ok := jsonMediaType(resp.Header); !ok {
		return introspected{}, fmt.Errorf("answer's content type %q is not JSON", mt)
	}
	var c introspectionClaims
	if err := jsonv2.Unmarshal(raw, &c); err != nil || c.Active == nil {
		return introspected{}, errors.New("answer is not an RFC 7662 JSON object with active")
	}
	if !*c.Active {
		return introspected{err: tokenError(ReasonInactive, "the issuer says the token is not active")}, nil
	}
	if c.Iss != "" && c.Iss != iss.name {
		return introspected{err: tokenError(ReasonUnknownIssuer, "introspection names issuer %q", truncate(c.Iss))}, nil
	}
	p, err := v.principal(iss, &c.tokenClaims, raw, now, principalFromIntrospection, in.opts.CacheTTL)
	if err != nil {
		return introspected{err: AsError(err)}, nil
	}
	if strings.EqualFold(c.TokenType, "DPoP") && p.JKT == "" {
		// RFC 9449 §6.2: a DPoP-bound token, whose key the answer must
		// name in cnf.jkt; without it the binding cannot be checked.
		return introspected{err: tokenError(ReasonUnsupportedCnf, "token_type DPoP without cnf.jkt")}, nil
	}
	p.Introspected = true
	return introspected{p: p}, nil
}

// resolve returns the endpoint: configured, or the issuer's metadata's.
func (in *introspector) resolve(ctx context.Context, issuer string) (string, error) {
	if in.opts.Endpoint != "" {
		return in.opts.Endpoint, nil
	}
	in.mu.Lock()
	ep := in.endpoint
	in.mu.Unlock()
	if ep != "" {
		return ep, nil
	}
	md, err := Discover(ctx, in.client, issuer)
	if err != nil {
		return "", err
	}
	if md.IntrospectionEndpoint == "" {
		return "", fmt.Errorf("metadata of %s has no introspection_endpoint", issuer)
	}
	in.mu.Lock()
	in.endpoint = md.IntrospectionEndpoint
	in.mu.Unlock()
	return md.IntrospectionEndpoint, nil
}

// clientAssertion is a private_key_jwt client assertion (RFC 7523 §3) for
// the endpoint: signed by the configured key, valid for one minute.
func (in *introspector) clientAssertion(endpoint string, now time.Time) (string, error) {
	var jti [16]byte
	rand.Read(jti[:])
	payload, err := json.Marshal(map[string]any{
		"iss": in.opts.ClientID, "sub": in.opts.ClientID, "aud": endpoint,
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	})
	if err != nil {
		return "", err
	}
	alg := in.opts.PrivateKey.Algorithm()
	if alg == nil || alg.String() == "" {
		alg = defaultKeyAlg(in.opts.PrivateKey)
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, in.opts.PrivateKey))
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return string(out), nil
}

func defaultKeyAlg(k jwk.Key) jwa.SignatureAlgorithm {
	switch k.KeyType() {
	case jwa.RSA:
		return jwa.RS256
	case jwa.OKP:
		return jwa.EdDSA
	}
	if crv, ok := k.Get("crv"); ok && fmt.Sprint(crv) == "P-384" {
		return jwa.ES384
	}
	return jwa.ES256
}

// flight runs one call per key at a time; callers that come while it runs
// wait for its result (their own ctx bounds the wait). The call runs on a
// context detached from any one caller's cancellation.
type flight[V any] struct {
	mu    sync.Mutex
	calls map[[32]byte]*flightCall[V]
}

type flightCall[V any] struct {
	done chan struct{}
	v    V
	err  error
}

func (f *flight[V]) do(ctx context.Context, key [32]byte, fn func(context.Context) (V, error)) (V, error) {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.v, c.err
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
	}
	if f.calls == nil {
		f.calls = make(map[[32]byte]*flightCall[V])
	}
	c := &flightCall[V]{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()

	c.v, c.err = fn(context.WithoutCancel(ctx))
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
	return c.v, c.err
}
