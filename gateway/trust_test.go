package gateway

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
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

// publicGetRoutes has a public GET-only route before an authenticated
// catch-all.
const publicGetRoutes = `
  - name: docs
    path_prefix: /docs
    methods: [GET]
    upstream: %[2]s
    auth: none
  - name: rest
    path_prefix: /
    upstream: %[2]s
    auth: required
`

// TestMethodRouteConfusion: a request is routed as the upstream will read
// its method. Upstreams answer HEAD with their GET handler (Go's ServeMux,
// Express, Flask, Rails, Spring), so a HEAD must not slip past a GET-only
// route to a laxer one; and Django and Werkzeug (Flask) upper-case the
// method they are given while Go, Java servlets and Rails do not, so a
// "get" whose route depends on its case has none (404).
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
		{name: "fail/lower-case-get-past-get-only-route", extra: adminRoutes + restRoute, method: "get", path: "/admin/secrets", status: 404},
		{name: "fail/mixed-case-head-past-get-only-route", extra: adminRoutes + restRoute, method: "Head", path: "/admin/secrets", status: 404},
		{name: "fail/forward-auth-lower-case-get", extra: adminRoutes + restRoute + forwardAuthConfig(true), method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "get", "X-Original-URL", "https://api.example.com/admin/secrets"}, status: 404},
		// The other way round: the GET-only route is the laxer one, and
		// Go's ServeMux, Java servlets and Rails read a "get" as no GET
		// (an else branch, a method-less handler): the gateway cannot
		// tell which route the upstream will take it for.
		{name: "fail/lower-case-get-onto-laxer-get-only-route", extra: publicGetRoutes, method: "get", path: "/docs/x", status: 404},
		{name: "fail/forward-auth-lower-case-get-onto-laxer-get-only-route", extra: publicGetRoutes + forwardAuthConfig(true), method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "get", "X-Original-URL", "https://api.example.com/docs/x"}, status: 404},
		{name: "ok/lower-case-on-method-less-route", extra: publicGetRoutes, method: "post", path: "/other/x", status: 401},
		{name: "ok/get-on-laxer-get-only-route", extra: publicGetRoutes, method: "GET", path: "/docs/x", status: 200},
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

// TestForwardAuthSmuggledFields: the proxy strips a client's own X-Auth-*
// fields and method overrides; in forward auth the ingress forwards the
// request itself and overwrites only the identity fields it copies from
// the answer, so a call whose original request carries another such field
// is refused rather than let through to the upstream.
func TestForwardAuthSmuggledFields(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true))
	nginx := []string{"X-Original-Method", "GET", "X-Original-URL", "https://api.example.com/public/x",
		"X-Auth-Request-Redirect", "/public/x"} // ingress-nginx writes this one itself
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"ok/plain", nil, 200},
		{"ok/identity-field-the-ingress-overwrites", []string{"X-Auth-Subject", "admin", "x-auth-tier", "business"}, 200},
		{"fail/other-x-auth-field", []string{"X-Auth-Role", "admin"}, 400},
		{"fail/identity-field-underscores", []string{"X_Auth_Subject", "admin"}, 400},
		{"fail/identity-field-mixed", []string{"X-Auth_Client-Id", "agent-9"}, 400},
		{"fail/method-override", []string{"X-HTTP-Method-Override", "DELETE"}, 400},
		{"fail/method-override-underscores", []string{"X_Method_Override", "DELETE"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(time.Minute)
			res := e.do(e.req("GET", "/auth", append(slices.Clone(nginx), tc.hdr...)...))
			if res.status != tc.status {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tc.status)
			}
			if tc.status == 400 && res.err.Error != "invalid_request" {
				t.Fatalf("got %s, want invalid_request", res.body)
			}
		})
	}
}

// TestNginxSmuggledFields: through a real nginx configured from the shipped
// Ingress, a client's X-Auth-Role never reaches the upstream.
func TestNginxSmuggledFields(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true))
	ng := startNginx(t, e.srv.URL, e.up.URL)
	r, _ := http.NewRequest("GET", ng.URL+"/public/x", nil)
	r.Header.Set("X-Auth-Role", "admin")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(upstreamMark) != "" || resp.StatusCode != 400 {
		t.Fatalf("got %d from the upstream %q, want the gateway's 400", resp.StatusCode, resp.Header.Get(upstreamMark))
	}

	// nginx writes its own X-Original-URL and X-Auth-Request-Redirect on
	// the auth call, so the gateway never sees a client's; the Ingress's
	// snippet keeps them, and X-Rewrite-URL, from the upstream, which
	// could route or redirect on them.
	for _, name := range []string{"X-Original-URL", "X-Rewrite-URL", "X-Auth-Request-Redirect"} {
		r, _ := http.NewRequest("GET", ng.URL+"/public/x", nil)
		r.Header.Set(name, "/tools/x")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		e.up.mu.Lock()
		got := e.up.last.Header.Values(name)
		e.up.mu.Unlock()
		if resp.StatusCode != 200 || len(got) != 0 {
			t.Errorf("%s: got %d, and the upstream got %q, want 200 and no such field", name, resp.StatusCode, got)
		}
	}
}

// TestUntrustedForwardingFields: X-Forwarded-* fields that only a proxy
// should write, and that upstreams build links and redirects from (Spring
// reads X-Forwarded-Prefix, -Port and -Ssl; Rack -Scheme, -Ssl and -Port),
// reach the upstream only from a trusted peer, as Traefik does it. The
// gateway writes X-Forwarded-For, -Proto and -Host itself.
func TestUntrustedForwardingFields(t *testing.T) {
	fields := []string{"X-Forwarded-Prefix", "/evil", "X-Forwarded-Port", "8443", "X-Forwarded-Ssl", "on",
		"X_Forwarded_Scheme", "http", "X-Forwarded-Server", "evil.example", "X-Forwarded-Tls-Client-Cert", "MIIB"}
	for _, tc := range []struct {
		name    string
		trusted bool
	}{
		{"fail/untrusted-peer", false},
		{"ok/trusted-peer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := ""
			if tc.trusted {
				extra = "server:\n  trusted_proxies: [127.0.0.1/32]\n"
			}
			e := newEnv(t, extra)
			res := e.do(e.req("GET", "/public/x", fields...))
			if res.status != 200 {
				t.Fatalf("got %d %s, want 200", res.status, res.body)
			}
			for i := 0; i < len(fields); i += 2 {
				got := ""
				for name, v := range res.echo.Header {
					if sameFieldName(name, strings.ToLower(strings.ReplaceAll(fields[i], "_", "-"))) {
						got = strings.Join(v, ",")
					}
				}
				if want := map[bool]string{true: fields[i+1]}[tc.trusted]; got != want {
					t.Errorf("upstream got %s %q, want %q", fields[i], got, want)
				}
			}
			if got := res.echo.Header.Get("X-Forwarded-Proto"); got == "" {
				t.Errorf("upstream got no X-Forwarded-Proto")
			}
		})
	}
}

// TestGatewayWrittenFieldsAnySpelling: the fields the gateway writes
// itself (X-Forwarded-For, -Proto, -Host, X-Real-IP, X-Request-Id) reach
// the upstream with the gateway's value only, not beside a client's
// X_Real_IP or X_Forwarded_Host, which a CGI-style server reads as the
// same field; from a trusted peer too, since no proxy writes them so.
func TestGatewayWrittenFieldsAnySpelling(t *testing.T) {
	fields := []string{"X_Real_IP", "X_Forwarded_For", "X_Forwarded_Proto", "X_Forwarded_Host", "X_Request_Id", "x-real_ip"}
	for _, tc := range []struct {
		name  string
		extra string
	}{
		{"fail/untrusted-peer", ""},
		{"fail/trusted-peer", "server:\n  trusted_proxies: [127.0.0.1/32]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.extra)
			var hdr []string
			for _, f := range fields {
				hdr = append(hdr, f, "forged.example")
			}
			res := e.do(e.req("GET", "/public/x", hdr...))
			if res.status != 200 {
				t.Fatalf("got %d %s, want 200", res.status, res.body)
			}
			for name, v := range res.echo.Header {
				if slices.Contains(v, "forged.example") {
					t.Errorf("upstream got %s: %q", name, v)
				}
			}
		})
	}
}
