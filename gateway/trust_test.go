package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// Findings of a review of the trust boundaries of the request path, each a
// case that failed before its fix.

// getOnlyRoutes has a GET-only route with no catch-all behind it.
const getOnlyRoutes = `
  - name: getonly
    path_prefix: /getonly
    methods: [GET]
    upstream: %[2]s
    auth: none
`

// TestMethodRouteConfusion: a request is routed as the upstream will read
// its method. Upstreams answer HEAD with their GET handler (Go's ServeMux,
// Express, Flask, Rails, Spring), so a HEAD must not slip past a GET-only
// route to a laxer one; and Django and Werkzeug (Flask) upper-case the
// method they are given, so a "get" must not either.
func TestMethodRouteConfusion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  string
		method string
		path   string
		hdr    []string
		status int
	}{
		{name: "fail/head-past-get-only-route", extra: adminRoutes + restRoute, method: "HEAD", path: "/admin/secrets", status: 401},
		{name: "fail/forward-auth-head-past-get-only-route", extra: adminRoutes + restRoute + forwardAuthConfig(true), method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "HEAD", "X-Original-URL", "https://api.example.com/admin/secrets"}, status: 401},
		{name: "fail/lower-case-get-past-get-only-route", extra: adminRoutes + restRoute, method: "get", path: "/admin/secrets", status: 401},
		{name: "fail/mixed-case-head-past-get-only-route", extra: adminRoutes + restRoute, method: "Head", path: "/admin/secrets", status: 401},
		{name: "fail/forward-auth-lower-case-get", extra: adminRoutes + restRoute + forwardAuthConfig(true), method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "get", "X-Original-URL", "https://api.example.com/admin/secrets"}, status: 401},
		{name: "ok/get-on-get-only-route", extra: getOnlyRoutes, method: "GET", path: "/getonly/x", status: 200},
		{name: "ok/head-on-get-only-route", extra: getOnlyRoutes, method: "HEAD", path: "/getonly/x", status: 200},
		{name: "ok/post-past-get-only-route", extra: adminRoutes + restRoute, method: "POST", path: "/admin/secrets", status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.extra)
			res := e.do(e.req(tc.method, tc.path, tc.hdr...))
			if res.status != tc.status {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tc.status)
			}
			if res.status >= 400 && res.header.Get(upstreamMark) != "" {
				t.Fatalf("the upstream answered a request the gateway should have refused")
			}
		})
	}
}

var _ = http.MethodGet

// TestUpstreamNeverSees: fields a client wrote that would make the
// upstream act on another request than the one the gateway judged do not
// reach it, in any spelling a CGI-style server reads (PHP, WSGI and Rack
// see X_HTTP_METHOD_OVERRIDE as X-HTTP-Method-Override).
func TestUpstreamNeverSees(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  []string // name, value: the name must not reach the upstream
	}{
		{"fail/method-override-underscores", []string{"X_HTTP_Method_Override", "DELETE"}},
		{"fail/method-override-mixed", []string{"X-HTTP_Method-Override", "DELETE"}},
		{"fail/x-http-method-underscores", []string{"X_Http_Method", "DELETE"}},
		{"fail/x-method-override-underscores", []string{"x_method_override", "DELETE"}},
		// Symfony before 2.7.49/3.4.14, Zend Framework 1 and 2, and IIS
		// URL Rewrite apps route on these: /public/x would serve /tools/x.
		{"fail/x-original-url", []string{"X-Original-URL", "/tools/x"}},
		{"fail/x-rewrite-url", []string{"X-Rewrite-URL", "/tools/x"}},
		{"fail/x-original-url-underscores", []string{"X_Original_URL", "/tools/x"}},
		// The descriptions of an original request the gateway's own
		// forward auth reads, for an upstream that reads them too.
		{"fail/x-original-method", []string{"X-Original-Method", "DELETE"}},
		{"fail/x-forwarded-uri", []string{"X-Forwarded-Uri", "/tools/x"}},
		{"fail/x-forwarded-method", []string{"X-Forwarded-Method", "DELETE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			res := e.do(e.req("POST", "/public/x", tc.hdr...))
			if res.status != 200 {
				t.Fatalf("got %d %s, want 200", res.status, res.body)
			}
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				for name, v := range res.echo.Header {
					if strings.EqualFold(name, tc.hdr[i]) {
						t.Errorf("upstream got %s: %q", name, v)
					}
				}
			}
		})
	}
}
