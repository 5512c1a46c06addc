package gateway

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/gateway/internal/authtest"
)

// Findings of a security review, each a case that failed before its fix.

const adminRoutes = `
  - name: admin
    path_prefix: /admin
    methods: [GET]
    upstream: %[2]s
    auth: required
  - name: admin-host
    host: api.example.com
    path_prefix: /internal
    upstream: %[2]s
    auth: required
`

// restRoute sends everything else to the upstream without auth.
const restRoute = `
  - name: rest
    path_prefix: /
    upstream: %[2]s
    auth: none
`

// TestPreflightNeedsCORS: only a route with cors answers a preflight
// without a token; on any other route an OPTIONS shaped like a preflight is
// an ordinary request, matched on its own method, and authenticated.
func TestPreflightNeedsCORS(t *testing.T) {
	e := newEnv(t, adminRoutes+forwardAuthConfig(true))
	pre := []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "GET"}
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"fail/preflight-on-route-without-cors", e.req("OPTIONS", "/admin/secrets", pre...), 404},
		{"fail/preflight-forward-auth-without-cors", e.req("GET", "/auth", append(pre,
			"X-Original-Method", "OPTIONS", "X-Original-URL", "https://api.example.com/admin/secrets")...), 404},
		{"fail/preflight-on-required-route-without-cors", e.req("OPTIONS", "/internal/x", append(pre, "Host", "api.example.com")...), 401},
		{"ok/preflight-on-cors-route", e.req("OPTIONS", "/tools/x", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST"), 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if h := tc.req.Header.Get("Host"); h != "" {
				tc.req.Host = h
			}
			res := e.do(tc.req)
			if res.status != tc.status || (res.status == 200 && res.echo.Path != "") {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tc.status)
			}
		})
	}
}

// TestAmbiguousPaths: paths and hosts that an ingress or an upstream would
// read as another route's (merged slashes, backslashes, matrix parameters,
// a trailing dot in the host) are refused or matched as they would be read.
func TestAmbiguousPaths(t *testing.T) {
	e := newEnv(t, adminRoutes+restRoute+forwardAuthConfig(true))
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"fail/double-slash", e.req("GET", "//admin/secrets"), 400},
		{"fail/inner-double-slash", e.req("GET", "/x//admin"), 400},
		{"fail/backslash", e.req("GET", "/public/..\\admin/x"), 400},
		{"fail/encoded-backslash", e.req("GET", "/public/..%5Cadmin/x"), 400},
		{"fail/matrix-parameter", e.req("GET", "/admin;x=1/secrets"), 400},
		// C upstreams end a path at a NUL (/admin), Ruby's $ at a line
		// feed; nginx refuses a decoded NUL.
		{"fail/nul-byte", e.req("GET", "/admin%00/secrets"), 400},
		{"fail/line-feed", e.req("GET", "/admin%0A/secrets"), 400},
		{"fail/tab", e.req("GET", "/admin%09/secrets"), 400},
		{"fail/delete", e.req("GET", "/admin%7F/secrets"), 400},
		{"ok/encoded-space", e.req("GET", "/public/a%20b"), 200},
		{"fail/forward-auth-double-slash", e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "https://api.example.com//admin/secrets"), 400},
		{"fail/forward-auth-host-trailing-dot", e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "https://api.example.com./internal/x"), 401},
		{"ok/trailing-slash", e.req("GET", "/public/x/"), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(tc.req)
			if res.status != tc.status {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tc.status)
			}
		})
	}
}

// TestHeadersNeverForwarded: method overrides, a client's X-Real-IP, and
// identity headers spelled with underscores do not reach the upstream;
// X-Real-IP carries the client address the gateway established.
func TestHeadersNeverForwarded(t *testing.T) {
	e := newEnv(t, "")
	res := e.do(e.req("POST", "/public/x", "X-HTTP-Method-Override", "DELETE", "X-HTTP-Method", "DELETE",
		"X-Method-Override", "DELETE", "X-Real-IP", "10.9.9.9", "X_Auth_Subject", "admin", "X_AUTH_SCOPE", "admin"))
	for name := range res.echo.Header {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.Contains(n, "method") || strings.HasPrefix(n, "x-auth-") && n != "x-auth-tier" {
			t.Errorf("upstream got %s: %q", name, res.echo.Header[name])
		}
	}
	if got := res.echo.Header.Get("X-Real-Ip"); got != "127.0.0.1" {
		t.Errorf("upstream got X-Real-IP %q, want the client address 127.0.0.1", got)
	}
}

// TestFullReplayStore: a full replay store never accepts a proof unchecked,
// whatever on_error says (on_error is for a store that fails, not for one
// that is full), and requests refused by the rate limit do not fill it.
func TestFullReplayStore(t *testing.T) {
	e := newEnv(t, `
  - name: limited
    path_prefix: /limited
    upstream: %[2]s
    auth: required
    rate_limits: {client: 2/m}
replay: {max_entries: 3, on_error: fail_open}
`)
	akey := authtest.NewKey(t)
	atok := e.iss.BoundToken(t, akey, "attacker", "tools:call", nil)
	for i := 0; i < 10; i++ { // 2 pass, 8 get 429
		e.do(e.dpopWith(e.req("GET", "/limited/x"), atok, akey))
	}
	tok := e.token(nil)
	victim := e.dpop(e.req("GET", "/limited/x"), tok)
	if res := e.do(victim); res.status != 200 {
		t.Fatalf("the victim's first request: got %d %s, want 200 (429s must not fill the store)", res.status, res.body)
	}
	replayed := e.req("GET", "/limited/x", "Authorization", victim.Header.Get("Authorization"), "DPoP", victim.Header.Get("DPoP"))
	if res := e.do(replayed); res.status != 401 {
		t.Fatalf("replay: got %d %s, want 401", res.status, res.body)
	}
	// Now full (3 live claims): a new proof, from a client with budget
	// left, is refused, not waved through.
	third := e.iss.BoundToken(t, e.key, "agent-3", "tools:call", nil)
	if res := e.do(e.dpop(e.req("GET", "/limited/x"), third)); res.status != 503 {
		t.Fatalf("store full, on_error fail_open: got %d %s, want 503", res.status, res.body)
	}
}

// TestProxyErrorLogsNoQuery: the cause of a 502, logged at debug level,
// names the operation, not the upstream URL with the client's query.
func TestProxyErrorLogsNoQuery(t *testing.T) {
	e := newEnv(t, "")
	var buf strings.Builder
	e.gw.log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if res := e.do(e.req("GET", "/dead/x?api_key=hunter2")); res.status != 502 {
		t.Fatalf("got %d", res.status)
	}
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), "upstream") {
		t.Fatalf("log: %s", buf.String())
	}
}

// TestMaxHeaderBytes: server.max_header_bytes caps the request header block
// at the configured size, not at the size plus the 4 KiB of slack net/http
// allows for its own buffering; a larger block gets 431 and a JSON error.
func TestMaxHeaderBytes(t *testing.T) {
	e := newEnv(t, "\nserver:\n  max_header_bytes: 4096\n  max_credential_bytes: 2048\n")
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"ok/well-under", 1000, 200},
		{"ok/just-under", 3700, 200},
		{"fail/just-over", 4200, 431},
		{"fail/within-net-http-slack", 7000, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(time.Minute) // a full anonymous budget
			res := e.do(e.req("GET", "/public/x", "X-Pad", strings.Repeat("a", tc.size)))
			if res.status != tc.status {
				t.Fatalf("%d bytes of X-Pad: got %d, want %d", tc.size, res.status, tc.status)
			}
			if tc.status == 431 && (res.err.Error != "invalid_request" || res.header.Get("Cache-Control") != "no-store") {
				t.Fatalf("got %q %q, want a JSON invalid_request with Cache-Control: no-store", res.body, res.header.Get("Cache-Control"))
			}
		})
	}
}
