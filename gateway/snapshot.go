package gateway

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/ratelimit"
)

// snapshot is a config compiled into what the request path reads: route
// table, verifier, limits. It is immutable; a reload builds a new one and
// swaps it in whole, so a request sees one config from start to end.
type snapshot struct {
	cfg            *config.Config
	routes         routeTable
	verifier       *auth.Verifier
	trusted        trustedProxies
	publicOrigin   string // scheme://host of public_url, "" to derive
	tiers          map[string]ratelimit.Limit
	ipCap          ratelimit.Limit
	authFailures   ratelimit.Limit
	algs           string // proof algorithms, space-separated
	issuers        []string
	replayFailOpen bool
	forwardAuth    string // forward-auth path, "" when disabled
}

// limitOf converts a config rate and burst to a ratelimit.Limit.
func limitOf(r config.Rate, burst int) ratelimit.Limit {
	if burst <= 0 {
		burst = r.Count
	}
	return ratelimit.Limit{Count: r.Count, Period: r.Per, Burst: burst}
}

// compile builds a snapshot from a validated config. previous, when set, is
// the verifier of the config it replaces, whose key caches carry over.
func (g *Gateway) compile(cfg *config.Config, previous *auth.Verifier) (*snapshot, error) {
	s := &snapshot{
		cfg:            cfg,
		tiers:          make(map[string]ratelimit.Limit),
		authFailures:   limitOf(cfg.RateLimits.AuthFailures.Rate, cfg.RateLimits.AuthFailures.Burst),
		replayFailOpen: cfg.Replay.OnError == config.FailOpen,
	}
	for _, p := range cfg.Server.TrustedProxies {
		s.trusted = append(s.trusted, p.Prefix)
	}
	if cfg.Server.PublicURL != "" {
		u, err := url.Parse(cfg.Server.PublicURL)
		if err != nil {
			return nil, fmt.Errorf("server.public_url: %w", err)
		}
		s.publicOrigin = u.Scheme + "://" + u.Host
	}
	for name, t := range cfg.RateLimits.Tiers {
		s.tiers[name] = limitOf(t.Rate, t.Burst)
	}
	if c := cfg.RateLimits.AnonymousIPCap; c != nil {
		s.ipCap = limitOf(c.Rate, c.Burst)
	}
	if cfg.ForwardAuth.Enabled {
		s.forwardAuth = cfg.ForwardAuth.Path
	}
	for _, iss := range cfg.Issuers {
		s.issuers = append(s.issuers, iss.Issuer)
	}
	v, err := g.newVerifier(cfg, previous)
	if err != nil {
		return nil, err
	}
	s.verifier = v
	s.algs = strings.Join(v.ProofAlgorithms(), " ")

	var routes []*route
	for i := range cfg.Routes {
		rt, err := g.compileRoute(&cfg.Routes[i], s.tiers)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		routes = append(routes, rt)
	}
	s.routes = newRouteTable(routes)
	return s, nil
}

// newVerifier builds the auth.Verifier a config describes.
func (g *Gateway) newVerifier(cfg *config.Config, previous *auth.Verifier) (*auth.Verifier, error) {
	opts := auth.Options{
		Previous:           previous,
		HTTPClient:         g.httpClient,
		OnFetch:            g.observeFetch,
		OnIntrospect:       g.metrics.observeIntrospection,
		DPoPAlgorithms:     cfg.DPoP.Algorithms,
		MaxAge:             time.Duration(cfg.DPoP.MaxAge),
		ClockSkew:          time.Duration(cfg.DPoP.ClockSkew),
		TierClaim:          cfg.RateLimits.TierClaim,
		MaxCredentialBytes: cfg.Server.MaxCredentialBytes,
	}
	if n := cfg.DPoP.Nonce; n.Enabled {
		src, err := auth.NewNonceSource([]byte(n.Secret), time.Duration(n.Lifetime))
		if err != nil {
			return nil, fmt.Errorf("dpop.nonce: %w", err)
		}
		opts.Nonces = src
	}
	for i, iss := range cfg.Issuers {
		io, err := introspectionOptions(iss.Introspection)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d].introspection: %w", i, err)
		}
		opts.Issuers = append(opts.Issuers, auth.IssuerOptions{
			Issuer:             iss.Issuer,
			JWKSURI:            iss.JWKSURI,
			Audiences:          iss.Audiences,
			Algorithms:         iss.Algorithms,
			RequireTyp:         iss.TypRequired(),
			RefreshInterval:    time.Duration(iss.RefreshInterval),
			MinRefreshInterval: time.Duration(iss.MinRefreshInterval),
			Introspection:      io,
		})
	}
	return auth.New(opts)
}

// introspectionOptions converts an issuer's introspection block, reading
// the private_key_jwt key file when there is one.
func introspectionOptions(c *config.Introspection) (*auth.IntrospectionOptions, error) {
	if c == nil {
		return nil, nil
	}
	io := &auth.IntrospectionOptions{
		Endpoint:         c.Endpoint,
		ClientID:         c.ClientID,
		ClientSecret:     c.ClientSecret,
		CacheTTL:         time.Duration(c.CacheTTL),
		NegativeCacheTTL: time.Duration(c.NegativeCacheTTL),
		Timeout:          time.Duration(c.Timeout),
	}
	if c.PrivateKeyFile != "" {
		b, err := os.ReadFile(c.PrivateKeyFile)
		if err != nil {
			return nil, err
		}
		k, err := jwk.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("private_key_file %s is not a JWK: %w", c.PrivateKeyFile, err)
		}
		if private, err := jwk.IsPrivateKey(k); err != nil || !private {
			return nil, fmt.Errorf("private_key_file %s holds no private key", c.PrivateKeyFile)
		}
		io.PrivateKey = k
	}
	return io, nil
}

func (g *Gateway) compileRoute(c *config.Route, tiers map[string]ratelimit.Limit) (*route, error) {
	up, err := url.Parse(c.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	rt := &route{
		name:        c.Name,
		host:        c.Host,
		prefix:      c.PathPrefix,
		upstream:    up,
		stripPrefix: c.StripPrefix,
		requireDPoP: c.DPoP != config.DPoPOptional,
		scopes:      c.Scopes,
		scope:       strings.Join(c.Scopes, " "),
		introspect:  c.Introspect,
		limits:      make(map[string]ratelimit.Limit, len(tiers)),
		timeout:     time.Duration(c.Timeout),
		resource:    c.Resource,
	}
	switch c.Auth {
	case config.AuthNone:
		rt.auth = authNone
	case config.AuthRequired:
		rt.auth = authRequired
	default:
		rt.auth = authOptional
	}
	if len(c.Methods) > 0 {
		rt.methods = make(map[string]bool)
		for _, m := range c.Methods {
			rt.methods[m] = true
		}
	}
	if len(c.Issuers) > 0 {
		rt.issuers = make(map[string]bool)
		for _, iss := range c.Issuers {
			rt.issuers[iss] = true
		}
		rt.issuerList = c.Issuers
	}
	for name, l := range tiers {
		if o, ok := c.RateLimits[name]; ok {
			l = limitOf(o, 0)
		}
		rt.limits[name] = l
	}
	if cc := c.CORS; cc != nil {
		rt.cors = newCORSPolicy(cc.AllowOrigins, cc.AllowMethods, cc.AllowHeaders, cc.ExposeHeaders, cc.AllowCredentials, time.Duration(cc.MaxAge))
	}
	rt.proxy = g.newProxy(rt)
	return rt, nil
}

// challengeParams are the challenge parameters for answers on rt (nil when
// no route matched).
func (s *snapshot) challengeParams(rt *route, t target) challengeParams {
	cp := challengeParams{algs: s.algs}
	if rt != nil && rt.auth != authNone {
		cp.resourceMetadata = t.origin + metadataPath(rt)
		cp.bearerToo = !rt.requireDPoP
	}
	return cp
}

// sortedKeys returns the keys of a set, sorted.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
