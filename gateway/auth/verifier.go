// Package auth verifies OAuth 2.1 access tokens (JWT, RFC 9068) and DPoP
// proofs (RFC 9449) for a resource server.
//
// It is pure: no listeners, no Redis, and the time is always a parameter.
// The caller (the gateway) claims the proof's replay key in a store once
// Verify has passed, and turns an *Error into an HTTP answer.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// IssuerOptions configures one trusted authorization server.
type IssuerOptions struct {
	Issuer             string   // exact iss value
	JWKSURI            string   // "" to discover (RFC 8414, then OIDC)
	Audiences          []string // aud must contain one of these
	Algorithms         []string // asymmetric JWS algorithms accepted
	RequireTyp         bool     // header typ must be at+jwt (RFC 9068 §4)
	RefreshInterval    time.Duration
	MinRefreshInterval time.Duration
	// Introspection, when set, enables RFC 7662 at this issuer.
	Introspection *IntrospectionOptions
}

// Options configures a Verifier.
type Options struct {
	Issuers        []IssuerOptions
	DPoPAlgorithms []string      // algorithms accepted for proofs
	MaxAge         time.Duration // how old a proof's iat may be
	ClockSkew      time.Duration // tolerance for iat, nbf, exp
	// Nonces, when set, makes a server nonce mandatory in every proof.
	Nonces *NonceSource
	// TierClaim names the token claim that selects a rate-limit tier.
	TierClaim string
	// TokenCacheSize bounds the verified-token cache (default 100,000).
	TokenCacheSize int
	// MaxCredentialBytes bounds the token and proof sizes (default 8192).
	MaxCredentialBytes int
	// HTTPClient fetches metadata and JWKS (default: 10s timeout).
	HTTPClient *http.Client
	// OnFetch, when set, is called after every JWKS fetch (metrics).
	OnFetch func(issuer string, err error)
	// OnIntrospect, when set, is called after every introspection call.
	OnIntrospect func(issuer string, err error)
	// Previous, when set, is the verifier this one replaces (a config
	// reload): the keys and introspection answers of every issuer whose
	// options did not change are taken over instead of fetched again.
	Previous *Verifier
}

// Verifier checks credentials against its configuration. Build it with New;
// it is safe for concurrent use.
type Verifier struct {
	issuers   map[string]*issuer
	order     []*issuer
	proofAlgs algSet
	maxAge    time.Duration
	skew      time.Duration
	nonces    *NonceSource
	tierClaim string
	tokens    *sumCache[*Principal]
	jwks      *jwkCache
	maxCred   int
	// introspecting are the issuers with introspection, in config order.
	introspecting []*issuer
}

type issuer struct {
	name       string
	audiences  []string
	algs       algSet
	requireTyp bool
	keys       *keySet
	intro      *introspector // nil without introspection
	opts       IssuerOptions // as configured, to tell a reload what changed
}

func (iss *issuer) audienceOK(aud audience) bool {
	for _, a := range aud {
		if slices.Contains(iss.audiences, a) {
			return true
		}
	}
	return false
}

// New checks opts and builds a Verifier. It fetches nothing: call Run (or
// let the first token trigger a fetch).
func New(opts Options) (*Verifier, error) {
	proofAlgs, err := newAlgSet(opts.DPoPAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("dpop algorithms: %w", err)
	}
	if opts.MaxAge <= 0 {
		return nil, errors.New("max age must be positive")
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	v := &Verifier{
		issuers:   make(map[string]*issuer),
		proofAlgs: proofAlgs,
		maxAge:    opts.MaxAge,
		skew:      opts.ClockSkew,
		nonces:    opts.Nonces,
		tierClaim: opts.TierClaim,
		tokens:    newSumCache[*Principal](cmp(opts.TokenCacheSize, 100_000)),
		jwks:      newJWKCache(10_000),
		maxCred:   cmp(opts.MaxCredentialBytes, 8192),
	}
	for _, o := range opts.Issuers {
		algs, err := newAlgSet(o.Algorithms)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: %w", o.Issuer, err)
		}
		if _, dup := v.issuers[o.Issuer]; dup || o.Issuer == "" {
			return nil, fmt.Errorf("issuer %q is empty or configured twice", o.Issuer)
		}
		if len(o.Audiences) == 0 {
			return nil, fmt.Errorf("issuer %s: no audiences", o.Issuer)
		}
		iss := &issuer{
			name:       o.Issuer,
			audiences:  slices.Clone(o.Audiences),
			algs:       algs,
			requireTyp: o.RequireTyp,
			opts:       o,
			keys: &keySet{
				issuer:      o.Issuer,
				configured:  o.JWKSURI,
				client:      client,
				every:       cmp(o.RefreshInterval, 15*time.Minute),
				minInterval: cmp(o.MinRefreshInterval, 5*time.Second),
				observe:     opts.OnFetch,
			},
		}
		if o.Introspection != nil {
			io := *o.Introspection
			io.Timeout = cmp(io.Timeout, 5*time.Second)
			iss.intro = &introspector{opts: io, client: client, observe: opts.OnIntrospect,
				cache: newSumCache[introspected](cmp(opts.TokenCacheSize, 100_000))}
		}
		if prev := opts.Previous; prev != nil {
			if old := prev.issuers[o.Issuer]; old != nil && reflect.DeepEqual(old.opts, o) {
				iss.keys = old.keys
				// Cached answers hold principals read with the tier
				// claim and skew of then: kept only if those are now's.
				if prev.tierClaim == opts.TierClaim && prev.skew == opts.ClockSkew {
					iss.intro = old.intro
				}
			}
		}
		if iss.intro != nil {
			v.introspecting = append(v.introspecting, iss)
		}
		v.issuers[o.Issuer] = iss
		v.order = append(v.order, iss)
	}
	return v, nil
}

// cmp returns v, or def when v is the zero value.
func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Request is one HTTP request's credentials and target.
type Request struct {
	Method        string
	URL           string   // the request URI as the client addressed it: scheme://host/path
	Authorization []string // every Authorization header value
	DPoP          []string // every DPoP header value
	RequireDPoP   bool     // the route refuses Bearer tokens
	// Introspect asks the issuer about every token (RFC 7662), JWTs
	// included, so a revoked token is refused before its exp.
	Introspect bool
	// Issuers, when set, are the issuers the route accepts: an opaque
	// token is shown to their introspection endpoints only.
	Issuers []string
	Now     time.Time
}

// Result is what Verify established. A request without Authorization is
// anonymous: Principal is nil, and it is for the caller to decide whether
// the route allows that.
type Result struct {
	Scheme    string // "DPoP", "Bearer" or ""
	Principal *Principal
	Proof     *Proof // set for the DPoP scheme; claim Proof.ReplayKey
}

// Verify checks the request's credentials: the Authorization header, the
// access token (RFC 9068) and, for the DPoP scheme, the proof (RFC 9449
// §4.3 and §7.1). Every failure is an *Error.
func (v *Verifier) Verify(ctx context.Context, req Request) (Result, error) {
	scheme, token, err := v.parseAuthorization(req.Authorization)
	if err != nil || scheme == "" {
		return Result{}, err
	}
	fail := func(err error) (Result, error) {
		if e := AsError(err); e != nil && e.Scheme == "" {
			// A copy: the error may be shared (a cached refusal).
			c := *e
			c.Scheme = scheme
			err = &c
		}
		return Result{Scheme: scheme}, err
	}
	if scheme == "Bearer" && req.RequireDPoP {
		return Result{Scheme: scheme}, &Error{Code: InvalidToken, Reason: ReasonBearerRefused, Scheme: "DPoP",
			Err: errors.New("this route takes DPoP-bound tokens only")}
	}
	if scheme == "DPoP" {
		// §4.3 item 1 first: it costs nothing and spares a token check.
		if _, err := checkSingleHeader(req.DPoP); err != nil {
			return fail(err)
		}
		for _, h := range req.DPoP {
			if len(h) > v.maxCred {
				return fail(proofError(ReasonMalformedProof, "DPoP header larger than %d bytes", v.maxCred))
			}
		}
	}
	sum := sha256.Sum256([]byte(token))
	p, err := v.verifyToken(ctx, token, sum, req.Issuers, req.Now)
	if err == nil && req.Introspect && !p.Introspected {
		p, err = v.introspectJWT(ctx, p, token, sum, req.Now)
	}
	if err != nil {
		return fail(err)
	}
	if scheme == "Bearer" {
		if p.JKT != "" {
			// RFC 9449 §7.2: a DPoP-bound token sent as a bearer token.
			return fail(tokenError(ReasonBearerDowngrade, "DPoP-bound token presented with the Bearer scheme"))
		}
		return Result{Scheme: scheme, Principal: p}, nil
	}
	if p.JKT == "" {
		return fail(tokenError(ReasonUnboundDPoP, "DPoP scheme with a token that has no cnf.jkt"))
	}
	htu, err := NormalizeHTU(req.URL)
	if err != nil {
		return fail(proofError(ReasonHTUMismatch, "request URI %q does not normalise", truncate(req.URL)))
	}
	proof, err := v.checkProof(proofInput{
		headers: req.DPoP, method: req.Method, htu: htu, ath: sum, jkt: p.JKT, now: req.Now,
	})
	if err != nil {
		return fail(err)
	}
	return Result{Scheme: scheme, Principal: p, Proof: &proof}, nil
}

// VerifyProof checks a DPoP proof sent without an access token, as an
// authorization server's token endpoint receives it (RFC 9449 §5): every
// check of §4.3 but ath and the key binding. The returned Proof names the
// key (JKT) to bind the token to. The caller claims Proof.ReplayKey.
func (v *Verifier) VerifyProof(headers []string, method, url string, now time.Time) (Proof, error) {
	htu, err := NormalizeHTU(url)
	if err != nil {
		return Proof{}, proofError(ReasonHTUMismatch, "request URI does not normalise")
	}
	for _, h := range headers {
		if len(h) > v.maxCred {
			return Proof{}, proofError(ReasonMalformedProof, "DPoP header larger than %d bytes", v.maxCred)
		}
	}
	return v.checkProof(proofInput{headers: headers, method: method, htu: htu, noToken: true, now: now})
}

// parseAuthorization reads the one Authorization header a request may carry
// (RFC 9110 §11.6.2): scheme DPoP or Bearer (case-insensitive), one or more
// spaces, a token68. No header: scheme "".
func (v *Verifier) parseAuthorization(values []string) (scheme, token string, err error) {
	switch len(values) {
	case 0:
		return "", "", nil
	case 1:
	default:
		return "", "", &Error{Code: InvalidRequest, Reason: ReasonMultipleAuthorization, Err: fmt.Errorf("%d Authorization headers", len(values))}
	}
	h := values[0]
	if len(h) > v.maxCred {
		return "", "", &Error{Code: InvalidRequest, Reason: ReasonCredentialTooLarge, Err: fmt.Errorf("Authorization header larger than %d bytes", v.maxCred)}
	}
	s, t, ok := strings.Cut(h, " ")
	t = strings.TrimLeft(t, " ")
	switch {
	case strings.EqualFold(s, "DPoP"):
		scheme = "DPoP"
	case strings.EqualFold(s, "Bearer"):
		scheme = "Bearer"
	case isToken(s):
		// Another authentication scheme: the request carries no access
		// token, and is answered as one without (RFC 6750 §3 and §3.1:
		// a challenge, with no error code).
		return "", "", &Error{Code: InvalidToken, Reason: ReasonUnsupportedScheme, Err: errors.New("Authorization scheme is neither DPoP nor Bearer")}
	default:
		return "", "", &Error{Code: InvalidRequest, Reason: ReasonMalformedAuthorization, Err: errors.New("Authorization value does not begin with a scheme")}
	}
	if !ok || !isToken68(t) {
		return "", "", &Error{Code: InvalidRequest, Reason: ReasonMalformedAuthorization, Scheme: scheme, Err: errors.New("Authorization value is not one token68")}
	}
	return scheme, t, nil
}

// isToken: 1*tchar (RFC 9110 §5.6.2), as an auth-scheme is.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isToken68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
// (RFC 9110 §11.2).
func isToken68(s string) bool {
	end := len(strings.TrimRight(s, "="))
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		c := s[i]
		if !(isUnreserved(c) || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// Run refreshes every issuer's keys on schedule until ctx ends: first at
// once, then at each issuer's refresh interval (or sooner when the JWKS
// response's Cache-Control says so), with backoff after failures. clock
// may be nil (time.Now).
func (v *Verifier) Run(ctx context.Context, clock func() time.Time) {
	if clock == nil {
		clock = time.Now
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		v.RefreshDue(ctx, clock())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// RefreshDue refreshes, one after the other, the issuers whose scheduled
// refresh time has come at now. Run calls it every second.
func (v *Verifier) RefreshDue(ctx context.Context, now time.Time) {
	for _, iss := range v.order {
		iss.keys.refreshIfDue(ctx, now)
	}
}

// IssuerState is what the admin listener reports about one issuer.
type IssuerState struct {
	Issuer    string
	Loaded    bool      // keys are in memory
	FetchedAt time.Time // when they were fetched
}

// Issuers reports the key state of every issuer, in config order.
func (v *Verifier) Issuers() []IssuerState {
	out := make([]IssuerState, 0, len(v.order))
	for _, iss := range v.order {
		loaded, at := iss.keys.state()
		out = append(out, IssuerState{Issuer: iss.name, Loaded: loaded, FetchedAt: at})
	}
	return out
}

// ReplayTTL is how long a proof's replay key must be kept: a proof is
// accepted for max age after its iat, and its iat may lie skew in the future
// or past, so max age plus twice the skew covers every proof still valid.
func (v *Verifier) ReplayTTL() time.Duration { return v.maxAge + 2*v.skew }

// StillFresh reports whether a proof issued at iat is still inside its iat
// window at now: not older than max age plus skew. A replay key kept for
// ReplayTTL from when its first claim ran outlives that window only if the
// window is judged when a claim has run, not when the request came: a
// claim that took a while (a slow store, a slow key or introspection
// fetch before it) could otherwise find the first claim's key expired.
func (v *Verifier) StillFresh(iat, now time.Time) bool {
	return !iat.Before(now.Add(-v.maxAge - v.skew))
}

// Nonce returns the DPoP-Nonce to hand out at now, or "" when nonces are off.
func (v *Verifier) Nonce(now time.Time) string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Nonce(now)
}

// ProofAlgorithms lists the algorithms accepted for proofs, sorted, for the
// algs parameter of a DPoP challenge (RFC 9449 §7.1).
func (v *Verifier) ProofAlgorithms() []string {
	out := make([]string, 0, len(v.proofAlgs))
	for n := range v.proofAlgs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
