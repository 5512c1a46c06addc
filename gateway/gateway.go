// Package gateway is dpopgate's reverse proxy: it routes a request, checks
// its credentials (package auth), claims its DPoP proof against replay,
// enforces its rate-limit tier and forwards it with the verified identity.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay"
)

// Gateway is the reverse proxy. Build it with New; it is an http.Handler,
// safe for concurrent use, and its config can be swapped with Reload.
type Gateway struct {
	snap       atomic.Pointer[snapshot]
	limits     limiter
	replay     replayStore
	authLimits limiter // failed authentications per IP: limits, or local when limits are on Redis
	// limitsInProcess: limits is the memory backend, which answers a look
	// at a bucket without I/O.
	limitsInProcess bool
	redis           *redisBackends // nil without Redis
	replayWarn      rate.Sometimes
	log             *slog.Logger
	clock           func() time.Time
	httpClient      *http.Client
	metrics         *metrics
	usage           usage
	draining        atomic.Bool
	upgrades        *upgrades
}

// Options are the parts of a Gateway that do not come from its config.
// Every field is optional.
type Options struct {
	Logger *slog.Logger     // default: discard
	Clock  func() time.Time // default: time.Now
	// Limiter and Replay override the backends the config names. Without
	// them, New builds a Redis client when the config puts a backend on
	// Redis (see Close).
	Limiter limiter
	Replay  replayStore
	// HTTPClient fetches issuer metadata and JWKS.
	HTTPClient *http.Client
}

// New compiles cfg (already validated by package config) into a Gateway.
// It fetches nothing and connects to nothing (a Redis client dials on
// first use); Run loads the issuers' keys. Close releases the Redis client.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	g := &Gateway{
		limits:     opts.Limiter,
		replay:     opts.Replay,
		log:        opts.Logger,
		clock:      opts.Clock,
		httpClient: opts.HTTPClient,
		upgrades:   newUpgrades(),
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.clock == nil {
		g.clock = time.Now
	}
	g.metrics = newMetrics(g)
	g.replayWarn.Interval = warnEvery
	if err := g.useRedis(cfg, opts); err != nil {
		return nil, err
	}
	if g.limits == nil {
		g.limits = ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: cfg.RateLimits.MaxKeys, Clock: g.clock})
	}
	if g.replay == nil {
		g.replay = replay.NewMemory(replay.MemoryOptions{MaxEntries: cfg.Replay.MaxEntries, Clock: g.clock})
	}
	_, g.limitsInProcess = g.limits.(*ratelimit.Memory)
	if g.authLimits == nil {
		g.authLimits = g.limits
	}
	s, err := g.compile(cfg, nil)
	if err != nil {
		g.Close()
		return nil, err
	}
	g.snap.Store(s)
	return g, nil
}

// Run does the gateway's background work until ctx ends: it loads the
// issuers' keys at once and refreshes them on schedule.
func (g *Gateway) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		// The current snapshot's verifier: a reload may have replaced it.
		g.snap.Load().verifier.RefreshDue(ctx, g.clock())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// replayStore is what the gateway needs of a replay backend
// (replay.Memory, replay.Redis).
type replayStore interface {
	Claim(ctx context.Context, key string, ttl time.Duration) error
}

// exchange is one request's state as it goes through the gateway: what the
// pipeline established, for the proxy callbacks and the access log.
type exchange struct {
	id            string
	start         time.Time
	peerTrusted   bool
	preflight     bool // a CORS preflight on a route with cors: answered without a token
	route         *route
	ip            netip.Addr
	target        target
	principal     *auth.Principal
	tier          string
	limit         ratelimit.Limit
	decision      ratelimit.Decision
	limited       bool       // decision holds a real decision (headers are written)
	policy        string     // the bucket the headers name: the tier, or auth_failures
	admitted      *admission // claim and decision taken in one round trip, for limit
	nonce         string
	reason        string // why the request was refused, for the log
	upstreamStart time.Time
	upstream      time.Duration
	origin        string      // the Origin header, for CORS
	forwardAuth   bool        // a forward-auth call: target is the ingress's request
	body          *clientBody // the request body as it goes upstream
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// ServeHTTP is the request path of spec §3, in its order.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := g.snap.Load()
	x := &exchange{start: g.clock(), origin: r.Header.Get("Origin")}
	rw := &responseWriter{ResponseWriter: w}
	ip, peerTrusted := s.trusted.clientIP(r)
	x.ip, x.peerTrusted = ip, peerTrusted
	x.id = requestID(r, peerTrusted)
	rw.Header().Set("X-Request-Id", x.id)
	defer g.logExchange(r, rw, x)

	if headerBytes(r) > s.cfg.Server.MaxHeaderBytes {
		g.refuse(r.Context(), rw, s, x, &answer{code: string(auth.InvalidRequest), status: http.StatusRequestHeaderFieldsTooLarge,
			reason: "headers_too_large", cause: errors.New("request line and headers larger than server.max_header_bytes")})
		return
	}
	if g.serveForwardAuth(rw, r, s, x) {
		return
	}
	if s.serveMetadata(rw, r, peerTrusted) {
		return
	}
	x.target = s.targetOf(r, peerTrusted)
	if ans := g.admit(r.Context(), s, x, r); ans != nil {
		g.refuse(r.Context(), rw, s, x, ans)
		return
	}
	if x.preflight {
		x.route.cors.preflight(rw, r)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	if r.Body != nil && r.Body != http.NoBody {
		x.body = &clientBody{ReadCloser: r.Body}
		r.Body = x.body
	}
	// The proxy's answer gets the id in modifyResponse, or proxyError: the
	// reverse proxy clears the fields set here once it has written a 1xx.
	rw.Header().Del("X-Request-Id")
	r, done := g.upgrades.track(r)
	defer done()
	x.route.proxy.ServeHTTP(rw, r)
}

// admit runs the checks of spec §3 steps 1 to 7 for the request r, whose
// original method and URI are x.target (the same request, or, for forward
// auth, the one the ingress is asking about). On success x holds the route,
// principal, tier and rate-limit decision; otherwise the answer says why.
func (g *Gateway) admit(ctx context.Context, s *snapshot, x *exchange, r *http.Request) *answer {
	t := x.target
	// 1. Route, on a path every upstream reads the same way.
	if reason := pathProblem(t.path); reason != "" {
		return newAnswer(string(auth.InvalidRequest), reason, errors.New("ambiguous path"))
	}
	// A CORS preflight never needs a token (its very purpose is to ask
	// before sending one), but only a route with cors answers one: on any
	// other route an OPTIONS is an ordinary request.
	if isPreflight(r) {
		rt := s.routes.match(t.host, t.path, r.Header.Get("Access-Control-Request-Method"))
		if rt != nil && rt.cors != nil {
			x.route, x.preflight = rt, true
			return nil
		}
	}
	x.route = s.routes.match(t.host, t.path, t.method)
	if x.route == nil {
		return newAnswer(codeNotFound, "no_route", errNoRoute)
	}
	rt := x.route
	// 3. Credentials come in headers only (RFC 9449 and OAuth 2.1 §5.1.2).
	if tokenInQuery(t.rawQuery) || tokenInForm(r) {
		return newAnswer(string(auth.InvalidRequest), "token_in_query", errors.New("access_token outside the Authorization header"))
	}
	// 2, 4, 5. Client IP, then credentials, cheapest refusal first.
	authz, proofs := r.Header.Values("Authorization"), r.Header.Values("DPoP")
	if rt.auth != authNone && len(authz) > 0 {
		if ans := g.checkAuthFailureBudget(ctx, s, x); ans != nil {
			return ans
		}
		res, err := s.verifier.Verify(ctx, auth.Request{
			Method:        t.method,
			URL:           t.htu(),
			Authorization: authz,
			DPoP:          proofs,
			RequireDPoP:   rt.requireDPoP,
			Introspect:    rt.introspect,
			Issuers:       rt.issuerList,
			Now:           x.start,
		})
		if err != nil {
			ans := fromAuth(err)
			// Neither an outage nor a nonce challenge (RFC 9449 §8,
			// a step every client meets) is a failed authentication.
			if ans.code != string(auth.TemporarilyUnavailable) && ans.code != string(auth.UseDPoPNonce) {
				g.countAuthFailure(ctx, s, x)
			}
			return ans
		}
		x.principal = res.Principal
		if rt.issuers != nil && !rt.issuers[res.Principal.Issuer] {
			g.countAuthFailure(ctx, s, x)
			return &answer{code: string(auth.InvalidToken), status: http.StatusUnauthorized, reason: "issuer_not_allowed", scheme: res.Scheme}
		}
		// 6. Scopes.
		if missing := res.Principal.MissingScopes(rt.scopes); len(missing) > 0 {
			return &answer{code: string(auth.InsufficientScope), status: http.StatusForbidden, reason: "insufficient_scope",
				scheme: res.Scheme, scope: rt.scope}
		}
		x.nonce = s.verifier.Nonce(x.start)
		if res.Proof != nil {
			// 5 and 7: the proof is claimed once every other check
			// passed, the rate limit included.
			return g.admitProof(ctx, s, x, res.Proof)
		}
	}
	if x.principal == nil && rt.auth == authRequired {
		return &answer{code: string(auth.InvalidToken), status: http.StatusUnauthorized, reason: "missing_token"}
	}
	// 7. Rate limit.
	return g.limit(ctx, s, x)
}

// admitProof takes the rate-limit decision and claims the proof, recording
// its (jkt, jti) in the replay store so that it is accepted once across
// every replica sharing the store: in one round trip when both backends
// are on Redis, otherwise the decision first, so that requests refused for
// their rate do not fill the replay store.
func (g *Gateway) admitProof(ctx context.Context, s *snapshot, x *exchange, p *auth.Proof) *answer {
	if x.admitted = g.claimAndLimit(ctx, s, x, p); x.admitted == nil {
		if ans := g.limit(ctx, s, x); ans != nil {
			return ans
		}
		if ans := g.claimed(ctx, s, x, g.replay.Claim(ctx, p.ReplayKey, s.verifier.ReplayTTL())); ans != nil {
			return ans
		}
		return g.stillFresh(s, p)
	}
	if ans := g.claimed(ctx, s, x, x.admitted.claimErr); ans != nil {
		return ans
	}
	if ans := g.stillFresh(s, p); ans != nil {
		return ans
	}
	return g.limit(ctx, s, x)
}

// stillFresh refuses a proof whose iat window closed while it was being
// claimed: another replica's claim of it, made at the window's start, may
// have expired by the time this one ran, and this claim then proves
// nothing (see auth.Verifier.StillFresh).
func (g *Gateway) stillFresh(s *snapshot, p *auth.Proof) *answer {
	if s.verifier.StillFresh(p.IssuedAt, g.clock()) {
		return nil
	}
	return &answer{code: string(auth.InvalidDPoPProof), status: http.StatusUnauthorized, reason: string(auth.ReasonIATTooOld), scheme: "DPoP"}
}

// claimed turns the outcome of a replay claim into an answer: a replayed
// proof is refused; a store that failed is handled as replay.on_error says;
// a store that is full (or a Redis queue that is) never lets a proof
// through unchecked, whatever on_error says, since anyone able to fill it
// could then replay at will.
func (g *Gateway) claimed(ctx context.Context, s *snapshot, x *exchange, err error) *answer {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, replay.ErrReplayed):
		g.countAuthFailure(ctx, s, x)
		return &answer{code: string(auth.InvalidDPoPProof), status: http.StatusUnauthorized, reason: string(auth.ReasonReplayed), scheme: "DPoP"}
	case s.replayFailOpen && !errors.Is(err, replay.ErrFull) && !errors.Is(err, errRedisBusy):
		g.acceptUnchecked(err)
		return nil
	default:
		return newAnswer(string(auth.TemporarilyUnavailable), string(auth.ReasonReplayStoreUnavailable), err)
	}
}

// limit takes one token from the request's bucket (and, for anonymous
// callers, from the per-IP cap across routes, which is looked at first so
// that a request the cap refuses takes nothing from the route's bucket),
// or uses the decision claim took with it.
func (g *Gateway) limit(ctx context.Context, s *snapshot, x *exchange) *answer {
	key, l, ok := bucketOf(s, x)
	if !ok {
		return nil
	}
	var d ratelimit.Decision
	var err error
	switch {
	case x.admitted != nil:
		d, err = x.admitted.decision, x.admitted.limitErr
	case x.principal == nil && !s.ipCap.Unlimited():
		return g.limitCapped(ctx, s, x, key, l)
	default:
		d, err = g.limits.AllowN(ctx, key, l, 1)
	}
	switch {
	case errors.Is(err, errNotLimited):
		return nil
	case err != nil:
		return newAnswer(string(auth.TemporarilyUnavailable), "limiter_unavailable", err)
	}
	x.limit, x.decision, x.limited, x.policy = l, d, true, x.tier
	return refusal(x.decision)
}

// limitCapped is limit for an anonymous request under anonymous_ip_cap:
// one decision on the route's bucket and the cap together (one round trip
// on Redis). The headers show the budget with fewer requests left, so that
// X-RateLimit-Remaining never promises one the cap refuses, and a refusal
// shows the budget that refused.
func (g *Gateway) limitCapped(ctx context.Context, s *snapshot, x *exchange, key string, l ratelimit.Limit) *answer {
	c, err := g.limits.AllowCapped(ctx, key, l, "ipcap|"+limitKey(x.ip), s.ipCap)
	switch {
	case errors.Is(err, errNotLimited):
		return nil
	case err != nil:
		return newAnswer(string(auth.TemporarilyUnavailable), "limiter_unavailable", err)
	}
	x.limited = true
	if !c.Cap.Allowed || c.Bucket.Allowed && c.Cap.Remaining < c.Bucket.Remaining {
		x.limit, x.decision, x.policy = s.ipCap, c.Cap, policyIPCap
	} else {
		x.limit, x.decision, x.policy = l, c.Bucket, x.tier
	}
	return refusal(x.decision)
}

// refusal is the 429 for a decision that refused, nil for one that
// allowed.
func refusal(d ratelimit.Decision) *answer {
	if d.Allowed {
		return nil
	}
	a := newAnswer(codeRateLimited, "rate_limited", nil)
	a.retryAfter = d.RetryAfter
	return a
}

// peekLimit fills in x's decision when the request was refused before the
// rate-limit step, since every answer on a limited route carries the
// rate-limit headers (spec §4): the decision taken along with the replay
// claim, or else a look at the bucket the request would draw on (and, for
// an anonymous request, at the per-IP cap), which takes nothing from it. The tier stays unset: the request was not served
// in one. A look is taken on the memory backend only: on Redis it would
// cost a round trip, and refusals are kept off Redis (a flood of bad
// tokens, a Redis that does not answer, must not reach or wait on it).
func (g *Gateway) peekLimit(ctx context.Context, s *snapshot, x *exchange) {
	tier, key, l, ok := bucketFor(s, x)
	if !ok {
		return
	}
	var d ratelimit.Decision
	var err error
	switch {
	case x.admitted != nil:
		d, err = x.admitted.decision, x.admitted.limitErr
	case g.limitsInProcess:
		d, err = g.limits.AllowN(ctx, key, l, 0)
	default:
		return
	}
	if err != nil {
		return
	}
	x.limit, x.decision, x.limited, x.policy = l, d, true, tier
	// As limit does: an anonymous answer shows the per-IP cap when it
	// has fewer requests left than the route's bucket.
	if x.principal == nil && !s.ipCap.Unlimited() && g.limitsInProcess {
		cd, err := g.limits.AllowN(ctx, "ipcap|"+limitKey(x.ip), s.ipCap, 0)
		if err == nil && cd.Remaining < d.Remaining {
			x.limit, x.decision, x.policy = s.ipCap, cd, policyIPCap
		}
	}
}

// checkAuthFailureBudget refuses, before any signature is checked, a client
// address that has used up its budget of failed authentications.
func (g *Gateway) checkAuthFailureBudget(ctx context.Context, s *snapshot, x *exchange) *answer {
	if s.authFailures.Unlimited() {
		return nil
	}
	d, err := g.authLimits.AllowN(ctx, "authfail|"+limitKey(x.ip), s.authFailures, 0)
	if err != nil || d.Remaining >= 1 {
		return nil
	}
	x.limit, x.decision, x.limited, x.policy = s.authFailures, d, true, policyAuthFailures
	a := newAnswer(codeRateLimited, "auth_failures", nil)
	a.retryAfter = d.RetryAfter
	if a.retryAfter <= 0 {
		a.retryAfter = time.Duration(float64(time.Second) / max(s.authFailures.PerSecond(), 1e-9))
	}
	return a
}

func (g *Gateway) countAuthFailure(ctx context.Context, s *snapshot, x *exchange) {
	if !s.authFailures.Unlimited() {
		g.authLimits.AllowN(ctx, "authfail|"+limitKey(x.ip), s.authFailures, 1)
	}
}

// refuse writes the answer for a request the pipeline turned down.
func (g *Gateway) refuse(ctx context.Context, w http.ResponseWriter, s *snapshot, x *exchange, a *answer) {
	x.reason = a.reason
	g.countRefusal(x, a)
	h := w.Header()
	if x.route != nil {
		if x.route.cors != nil {
			x.route.cors.decorate(h, x.origin)
		}
		if !x.limited {
			g.peekLimit(ctx, s, x)
		}
		if x.limited {
			writeLimitHeaders(h, x.policy, x.limit, x.decision, x.start)
		}
	}
	if a.code == string(auth.UseDPoPNonce) {
		h.Set("DPoP-Nonce", s.verifier.Nonce(x.start))
	}
	if a.cause != nil {
		g.log.Debug("refused", "request_id", x.id, "reason", a.reason, "cause", a.cause.Error())
	}
	writeError(w, a, s.challengeParams(x.route, x.target))
}

// logExchange writes the access-log line of one request: never a token, a
// proof or a query string.
func (g *Gateway) logExchange(r *http.Request, w *responseWriter, x *exchange) {
	g.record(w, x)
	if !g.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("request_id", x.id),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", w.status()),
		slog.Int64("bytes", w.bytes),
		slog.String("client_ip", x.ip.String()),
		slog.Float64("latency_ms", float64(g.clock().Sub(x.start).Microseconds())/1000),
	)
	if x.forwardAuth {
		// The request judged, not the auth call; never its query.
		attrs = append(attrs, slog.Bool("forward_auth", true),
			slog.String("original_method", x.target.method), slog.String("original_path", x.target.path))
	}
	if x.route != nil {
		attrs = append(attrs, slog.String("route", x.route.name))
	}
	if x.tier != "" {
		attrs = append(attrs, slog.String("tier", x.tier))
	}
	if p := x.principal; p != nil {
		attrs = append(attrs, slog.String("client_id", p.ClientID), slog.String("subject", p.Subject), slog.String("issuer", p.Issuer))
		if p.JKT != "" {
			attrs = append(attrs, slog.String("jkt", p.JKT))
		}
	}
	if !x.upstreamStart.IsZero() {
		attrs = append(attrs, slog.Float64("upstream_ms", float64(x.upstream.Microseconds())/1000))
	}
	if x.reason != "" {
		attrs = append(attrs, slog.String("reason", x.reason))
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// headerBytes is the size of r's request line and header block as sent in
// HTTP/1.1, which server.max_header_bytes caps: net/http reads up to 4 KiB
// past its MaxHeaderBytes before it answers 431 itself.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 // SP SP CRLF
	n += len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " CRLF
		}
	}
	return n + 2 // the empty line
}
