package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/dpopgate/dpopgate/gateway/auth"
)

// Forward auth (spec §6): an ingress that keeps the data path to itself
// (ingress-nginx auth-url, Traefik ForwardAuth, Envoy ext_authz over HTTP)
// asks the gateway, before it forwards a request, whether the request may
// pass. The gateway judges the ORIGINAL request with the same pipeline as
// the proxy (admit) and answers without proxying: 200 and the identity for
// the ingress to copy upstream, or the refusal the proxy would have written.
//
// The auth call is a request to the auth URL, so a DPoP proof could never
// match it (htm/htu); the original method and URI come from what each
// ingress sends, and only from a peer in server.trusted_proxies:
//
//   - ingress-nginx: X-Original-Method and X-Original-URL
//     ($scheme://$http_host$request_uri), both written by the controller;
//   - Traefik: X-Forwarded-Method, -Proto, -Host and -Uri;
//   - Envoy: the original path and query appended to the auth path
//     (http_service.path_prefix), the original method as the method, the
//     original authority as Host, X-Forwarded-Proto for the scheme.
//
// A trusted ingress still passes on headers its client wrote: ingress-nginx
// forwards a client's X-Forwarded-Uri untouched, Traefik a client's
// X-Original-URL. So no description is preferred to another: every one
// present must describe the same request, or the call is refused (400).
// A forged description either repeats the real one or gets the request
// refused; it can never make the gateway judge another request.
//
// A call from a peer that is not a trusted proxy is refused (400
// invalid_request) rather than judged as it stands: its description cannot
// be believed, and the auth call itself is no request of any route.

// identityHeaders are the fields of an allowed answer that carry the
// verified identity (spec §3.8), for the ingress to copy upstream.
var identityHeaders = []string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Scope", "X-Auth-Tier", "X-Auth-Issuer", "X-Auth-Jkt"}

// ingressOverwrites are the X-Auth-* fields of an original request that
// the ingress replaces before the request goes upstream: the identity, and
// the X-Auth-Request-Redirect that ingress-nginx writes on the auth call.
var ingressOverwrites = append(slices.Clone(identityHeaders), "X-Auth-Request-Redirect")

// envoyRemoveHeader lists, in an allowed answer, the request fields Envoy's
// ext_authz HTTP client removes before the request goes upstream: the
// credentials, and the identity fields the answer leaves out, so that a
// client's own X-Auth-Subject cannot reach the upstream of an anonymous
// request (Envoy only overrides fields the answer carries).
const envoyRemoveHeader = "X-Envoy-Auth-Headers-To-Remove"

// forwardAuthCall tells whether r is a forward-auth call: r's path is the
// forward_auth.path, or (Envoy) that path followed by the original path.
// envoyURI is the original request URI for Envoy's form, "" otherwise.
func (s *snapshot) forwardAuthCall(r *http.Request) (envoyURI string, ok bool, err error) {
	if s.forwardAuth == "" {
		return "", false, nil
	}
	base := strings.TrimSuffix(s.forwardAuth, "/")
	p := r.URL.Path
	if p == s.forwardAuth || p == base {
		return "", true, nil
	}
	if !strings.HasPrefix(p, base+"/") {
		return "", false, nil
	}
	esc := r.URL.EscapedPath()
	if !strings.HasPrefix(esc, base+"/") {
		return "", true, errors.New("the forward-auth path itself is percent-encoded")
	}
	uri := esc[len(base):]
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		uri += "?" + r.URL.RawQuery
	}
	return uri, true, nil
}

// serveForwardAuth answers a forward-auth call when r is one, and reports
// whether it was.
func (g *Gateway) serveForwardAuth(w http.ResponseWriter, r *http.Request, s *snapshot, x *exchange) bool {
	envoyURI, ok, err := s.forwardAuthCall(r)
	if !ok {
		return false
	}
	x.forwardAuth = true
	if err != nil {
		g.refuse(r.Context(), w, s, x, forwardRefusal(reasonForwardMalformed, err))
		return true
	}
	t, ans := s.originalTarget(r, x.peerTrusted, envoyURI)
	if ans != nil {
		g.refuse(r.Context(), w, s, x, ans)
		return true
	}
	x.target = t
	if k := smuggledField(r.Header); k != "" {
		g.refuse(r.Context(), w, s, x, forwardRefusal(reasonForwardSmuggled, errors.New("the original request carries "+k+", which the ingress would pass upstream")))
		return true
	}
	if ans := g.admit(r.Context(), s, x, originalRequest(r, t)); ans != nil {
		g.refuse(r.Context(), w, s, x, ans)
		return true
	}
	g.allow(w, x)
	return true
}

// allow writes the 200 of an admitted request: no body; the identity, the
// rate-limit fields and a fresh DPoP nonce, for the ingress to copy
// upstream (identity) or to the client (the rest).
func (g *Gateway) allow(w http.ResponseWriter, x *exchange) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	setIdentity(h, x)
	remove := []string{"authorization", "dpop"}
	for _, k := range identityHeaders {
		if h.Get(k) == "" {
			remove = append(remove, strings.ToLower(k))
		}
	}
	h.Set(envoyRemoveHeader, strings.Join(remove, ", "))
	if x.limited {
		writeLimitHeaders(h, x.policy, x.limit, x.decision, x.start)
	}
	if x.nonce != "" {
		h.Set("DPoP-Nonce", x.nonce)
	}
	w.WriteHeader(http.StatusOK)
}

// originalRequest is r as the ingress's client sent it, for admit: the
// original method and URI, r's headers (credentials, Origin) and body.
func originalRequest(r *http.Request, t target) *http.Request {
	o := r.WithContext(r.Context())
	o.Method = t.method
	o.Host = t.host
	o.URL = &url.URL{Path: t.path, RawPath: t.rawPath, RawQuery: t.rawQuery}
	o.RequestURI = ""
	return o
}

// Reasons a forward-auth call is refused before the pipeline runs; all
// answer 400 invalid_request.
const (
	reasonForwardUntrusted = "forward_auth_untrusted_peer"
	reasonForwardNoRequest = "forward_auth_no_original_request"
	reasonForwardMalformed = "forward_auth_malformed"
	reasonForwardConflict  = "forward_auth_conflicting_headers"
	reasonForwardSmuggled  = "forward_auth_smuggled_field"
)

// smuggledField names a field of the original request that the proxy would
// have stripped (rewrite) but that the ingress would pass upstream, or "":
// an X-Auth-* field other than the identity fields the ingress overwrites
// with the answer's (and ingress-nginx's own X-Auth-Request-Redirect), any
// X-Auth-* spelled with '_' (read as X-Auth-* by CGI-style servers, and
// overwritten by no ingress), and method overrides. The gateway cannot
// take them out of a request it does not forward, so it refuses it.
func smuggledField(h http.Header) string {
	for k := range h {
		if anyFieldName(k, methodOverrides) {
			return k
		}
		if len(k) > 7 && sameFieldName(k[:7], "x-auth-") &&
			(strings.Contains(k, "_") || !slices.ContainsFunc(ingressOverwrites, func(o string) bool { return strings.EqualFold(k, o) })) {
			return k
		}
	}
	return ""
}

func forwardRefusal(reason string, cause error) *answer {
	return newAnswer(string(auth.InvalidRequest), reason, cause)
}

// originalTarget is the request a forward-auth call asks about, from every
// description present (see the top of this file); they must agree.
// public_url, when set, is the origin of the proof's htu, as for a proxied
// request.
func (s *snapshot) originalTarget(r *http.Request, peerTrusted bool, envoyURI string) (target, *answer) {
	if !peerTrusted {
		return target{}, forwardRefusal(reasonForwardUntrusted, errors.New("forward-auth call from a peer outside server.trusted_proxies"))
	}
	var views []target
	for _, describe := range []func(*http.Request, string) (target, bool, error){nginxView, traefikView, envoyView} {
		t, present, err := describe(r, envoyURI)
		if err != nil {
			return target{}, forwardRefusal(reasonForwardMalformed, err)
		}
		if present {
			views = append(views, t)
		}
	}
	if len(views) == 0 {
		return target{}, forwardRefusal(reasonForwardNoRequest, errors.New("forward-auth call without X-Original-*, X-Forwarded-Method/-Uri or an original path"))
	}
	for _, v := range views[1:] {
		if !sameRequest(views[0], v) {
			return target{}, forwardRefusal(reasonForwardConflict, errors.New("forward-auth call describes two different requests"))
		}
	}
	t := views[0]
	if s.publicOrigin != "" {
		t.origin = s.publicOrigin
	}
	return t, nil
}

// nginxView reads ingress-nginx's X-Original-Method and X-Original-URL.
func nginxView(r *http.Request, _ string) (target, bool, error) {
	methods, urls := r.Header.Values("X-Original-Method"), r.Header.Values("X-Original-URL")
	if len(methods) == 0 && len(urls) == 0 {
		return target{}, false, nil
	}
	if len(methods) != 1 || len(urls) != 1 {
		return target{}, true, errors.New("X-Original-Method and X-Original-URL: want exactly one of each")
	}
	scheme, rest, ok := strings.Cut(urls[0], "://")
	i := strings.IndexByte(rest, '/')
	if !ok || i < 0 {
		return target{}, true, errors.New("X-Original-URL is not an absolute URL")
	}
	return describedTarget(methods[0], scheme, rest[:i], rest[i:])
}

// traefikView reads Traefik ForwardAuth's X-Forwarded-Method, -Proto,
// -Host and -Uri. Proto and Host take their last value, as for a proxied
// request; Method and Uri must be single.
func traefikView(r *http.Request, _ string) (target, bool, error) {
	methods, uris := r.Header.Values("X-Forwarded-Method"), r.Header.Values("X-Forwarded-Uri")
	if len(methods) == 0 && len(uris) == 0 {
		return target{}, false, nil
	}
	if len(methods) != 1 || len(uris) != 1 {
		return target{}, true, errors.New("X-Forwarded-Method and X-Forwarded-Uri: want exactly one of each")
	}
	return describedTarget(methods[0], lastValue(r.Header, "X-Forwarded-Proto"), lastValue(r.Header, "X-Forwarded-Host"), uris[0])
}

// envoyView reads Envoy's form: the original URI after the auth path, the
// call's own method and Host, the scheme from X-Forwarded-Proto (Envoy
// sets it) or the connection.
func envoyView(r *http.Request, envoyURI string) (target, bool, error) {
	if envoyURI == "" {
		return target{}, false, nil
	}
	scheme := lastValue(r.Header, "X-Forwarded-Proto")
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	return describedTarget(r.Method, scheme, r.Host, envoyURI)
}

// describedTarget checks and assembles the parts of a described request:
// a method token, http or https, a Host-field host, and an origin-form
// request target (RFC 9112 §3.2.1).
func describedTarget(method, scheme, host, uri string) (target, bool, error) {
	if !validMethod(method) {
		return target{}, true, errors.New("original method is not a method token")
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return target{}, true, errors.New("original scheme is not http or https")
	}
	if !validHost(host) {
		return target{}, true, errors.New("original host is not a host")
	}
	if !strings.HasPrefix(uri, "/") || strings.ContainsFunc(uri, func(c rune) bool { return c <= ' ' || c == '#' || c >= 0x7f }) {
		return target{}, true, errors.New("original URI is not an origin-form request target")
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		// Not err itself: a *url.Error quotes the whole URI, query
		// (and whatever credential a client put there) included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return target{}, true, fmt.Errorf("original URI does not parse: %w", err)
	}
	host = strings.ToLower(host)
	return target{
		method:   method,
		origin:   scheme + "://" + host,
		host:     host,
		path:     u.Path,
		rawPath:  u.EscapedPath(),
		rawQuery: u.RawQuery,
	}, true, nil
}

// validMethod accepts an RFC 9110 §9.1 method: a token.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for _, c := range []byte(m) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// sameRequest reports whether two descriptions name one request.
func sameRequest(a, b target) bool {
	return a.method == b.method && a.origin == b.origin && a.rawPath == b.rawPath && a.rawQuery == b.rawQuery
}
