package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpopgate/dpopgate/gateway/auth"
)

// newTransport returns the Transport of one upstream: explicit timeouts
// everywhere, and an idle pool large enough for a busy gateway (the
// DefaultTransport keeps 2 idle connections per host, so under load most
// requests would open a new one). timeout bounds the wait for response
// headers only: a stream may run longer.
func newTransport(timeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:             nil, // a gateway never follows HTTP_PROXY to its upstreams
		DialContext:       dialer.DialContext,
		ForceAttemptHTTP2: true,
		// The client's Accept-Encoding, or none, goes upstream as sent,
		// and the body comes back as sent: no gzip asked for and unpacked
		// on the client's behalf (which drops Content-Length and leaves
		// an ETag that no longer names the bytes).
		DisableCompression:    true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: timeout,
	}
}

// newProxy builds the reverse proxy of one route (Rewrite, never Director:
// Rewrite gets a copy of the request stripped of hop-by-hop and forwarding
// headers, so nothing the client sent survives by accident).
func (g *Gateway) newProxy(rt *route) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { g.rewrite(rt, pr) },
		Transport:      newTransport(rt.timeout),
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		// What the proxy reports itself: an upstream that cut a body
		// short (a client that left is not reported).
		ErrorLog:   slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BufferPool: bufferPool{},
	}
}

// rewrite prepares the upstream request (spec §3.8): strip the prefix when
// asked, drop credentials and any inbound identity headers, add the
// verified identity and the forwarding headers.
func (g *Gateway) rewrite(rt *route, pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	out := pr.Out
	if rt.stripPrefix {
		stripPrefix(out.URL, rt.prefix)
	}
	pr.SetURL(rt.upstream)
	h := out.Header
	h.Del("Authorization")
	h.Del("DPoP")
	trusted := x != nil && x.peerTrusted
	for k := range h {
		// Identity fields are the gateway's to write; method overrides
		// and descriptions of another request would let a request that
		// passed as one method or path act as another upstream (routes
		// match on both); forwarding fields are a proxy's to write
		// (upstreams build links and redirects from X-Forwarded-Prefix,
		// -Port, -Ssl, -Scheme), so only a trusted peer's pass, as
		// Traefik has it. In any spelling, as CGI-style servers (PHP,
		// WSGI, Rack) read X_Auth_Subject as X-Auth-Subject. The
		// fields the gateway writes below go in every spelling, whoever
		// the peer: no proxy spells them with '_'.
		if len(k) > 7 && sameFieldName(k[:7], "x-auth-") || anyFieldName(k, methodOverrides) || anyFieldName(k, requestDescriptions) ||
			anyFieldName(k, gatewayWritten) || !trusted && len(k) > 12 && sameFieldName(k[:12], "x-forwarded-") {
			delete(h, k)
		}
	}
	// X-Forwarded-For: the trusted chain, then the peer. SetXForwarded
	// appends the peer to whatever X-Forwarded-For Out already holds.
	if trusted {
		if xff := pr.In.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			h["X-Forwarded-For"] = xff
		}
	}
	pr.SetXForwarded()
	if x == nil {
		return
	}
	if x.ip.IsValid() {
		h["X-Real-Ip"] = []string{x.ip.String()}
	}
	if scheme, host, ok := strings.Cut(x.target.origin, "://"); ok {
		h.Set("X-Forwarded-Proto", scheme)
		h.Set("X-Forwarded-Host", host)
	}
	h.Set("X-Request-Id", x.id)
	setIdentity(h, x)
	x.upstreamStart = g.clock()
}

// setIdentity writes the verified identity (spec §3.8): the tier always,
// the token's subject, client, scope, issuer and key when there is one.
func setIdentity(h http.Header, x *exchange) {
	if x.tier != "" {
		h.Set("X-Auth-Tier", x.tier)
	}
	if p := x.principal; p != nil {
		h.Set("X-Auth-Subject", p.Subject)
		h.Set("X-Auth-Client-Id", p.ClientID)
		h.Set("X-Auth-Scope", p.Scope())
		h.Set("X-Auth-Issuer", p.Issuer)
		if p.JKT != "" {
			h.Set("X-Auth-Jkt", p.JKT)
		}
	}
}

// methodOverrides are the names frameworks read a method override from,
// in lower case.
var methodOverrides = []string{"x-http-method-override", "x-http-method", "x-method-override"}

// gatewayWritten are the fields, in lower case, that the gateway writes
// to every upstream request itself (rewrite): a client's own, in any
// spelling, must not reach the upstream beside them.
var gatewayWritten = []string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "x-request-id"}

// requestDescriptions are the names of fields that describe another
// request than the one they come with, in lower case: frameworks route on
// X-Original-URL and X-Rewrite-URL (Symfony before 3.4.14, Zend Framework,
// IIS URL Rewrite), and forward-auth services (the gateway's own among
// them) judge the request that X-Original-Method, X-Forwarded-Method and
// X-Forwarded-Uri describe.
var requestDescriptions = []string{"x-original-url", "x-rewrite-url", "x-original-method", "x-forwarded-method", "x-forwarded-uri"}

// sameFieldName reports whether the header field name k is want (lower
// case, with '-') as a CGI-style server reads it: in any case, and with
// '_' for '-' (both become '_' in HTTP_X_AUTH_SUBJECT).
func sameFieldName(k, want string) bool {
	if len(k) != len(want) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// anyFieldName reports whether k is one of names, as sameFieldName reads
// it.
func anyFieldName(k string, names []string) bool {
	for _, n := range names {
		if sameFieldName(k, n) {
			return true
		}
	}
	return false
}

// stripPrefix removes the route prefix from the path, keeping a leading /.
func stripPrefix(u *url.URL, prefix string) {
	p := strings.TrimSuffix(prefix, "/")
	u.Path = ensureSlash(strings.TrimPrefix(u.Path, p))
	if u.RawPath != "" {
		if strings.HasPrefix(u.RawPath, p) {
			u.RawPath = ensureSlash(strings.TrimPrefix(u.RawPath, p))
		} else {
			u.RawPath = ""
		}
	}
}

func ensureSlash(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}

// modifyResponse puts the gateway's fields on an upstream answer: the
// rate-limit headers, the DPoP nonce (each replacing any the upstream
// sent), CORS.
func (g *Gateway) modifyResponse(res *http.Response) error {
	x := exchangeOf(res.Request.Context())
	if x == nil {
		return nil
	}
	x.upstream = g.clock().Sub(x.upstreamStart)
	h := res.Header
	for _, k := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Ratelimit-Policy", "Ratelimit"} {
		delete(h, k)
	}
	if x.limited {
		writeLimitHeaders(h, x.policy, x.limit, x.decision, x.start)
	}
	// DPoP is the gateway's: an upstream's own nonce would be signed into
	// proofs the gateway refuses.
	delete(h, "Dpop-Nonce")
	if x.nonce != "" {
		h.Set("DPoP-Nonce", x.nonce)
	}
	h.Set("X-Request-Id", x.id) // ours, in place of any the upstream sent
	if x.route != nil && x.route.cors != nil {
		x.route.cors.decorate(h, x.origin)
	}
	return nil
}

// proxyError answers 502 when the upstream cannot be reached and 504 when
// it does not answer in time, in the gateway's JSON shape; and 400 when the
// request's form body turned out to hold an access_token (formGuard), or
// when the client stopped sending it (it hung up, or server.read_timeout
// ran out): the upstream did not fail then, and the client, when it is
// still there, must not be told it did, nor get an empty 200.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if x := exchangeOf(r.Context()); x != nil && x.body != nil {
		if berr := x.body.failed(); berr != nil && !errors.Is(err, errTokenInBody) {
			reason := "request_body_incomplete"
			if ne, ok := errors.AsType[net.Error](berr); ok && ne.Timeout() {
				reason = "request_body_timeout"
			}
			w.Header().Set("X-Request-Id", x.id)
			g.refuse(r.Context(), w, g.snap.Load(), x, newAnswer(string(auth.InvalidRequest), reason, berr))
			return
		}
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; there is nobody to answer.
		if rw, ok := w.(*responseWriter); ok && rw.code == 0 {
			rw.code = 499
		}
		return
	}
	s := g.snap.Load()
	x := exchangeOf(r.Context())
	if x == nil {
		x = &exchange{start: g.clock()}
	} else {
		w.Header().Set("X-Request-Id", x.id)
	}
	if errors.Is(err, errTokenInBody) {
		g.refuse(r.Context(), w, s, x, newAnswer(string(auth.InvalidRequest), "token_in_query", err))
		return
	}
	if !x.upstreamStart.IsZero() {
		x.upstream = g.clock().Sub(x.upstreamStart)
	}
	code := codeBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		code = codeGatewayTimeout
	}
	// The cause goes to the log: keep the operation and the error, not the
	// upstream URL, which may carry the client's query string.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = fmt.Errorf("%s upstream: %w", ue.Op, ue.Err)
	}
	g.refuse(r.Context(), w, s, x, newAnswer(code, code, err))
}

// clientBody is a request body on its way upstream. It keeps the error
// reading it from the client failed with, if any, so that proxyError
// tells a client that stopped sending from an upstream that failed.
type clientBody struct {
	io.ReadCloser
	err atomic.Pointer[error]
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, errTokenInBody) {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (b *clientBody) failed() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bufferPool lends the proxy 32 KiB copy buffers.
type bufferPool struct{}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
