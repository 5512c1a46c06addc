package gateway

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/gateway/internal/authtest"
)

// TestAnswers shows every row of the answers table (spec §4) through the
// whole gateway: status, error code, challenge, Cache-Control.
func TestAnswers(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	for _, tc := range []struct {
		name      string
		req       func() *http.Request
		status    int
		code      string
		challenge []string // expected WWW-Authenticate values, by prefix and contained parts
	}{
		{"fail/no-token-required-route", func() *http.Request { return e.req("GET", "/tools/search") },
			401, "invalid_token", []string{`DPoP algs="`, `resource_metadata="` + e.srv.URL + `/.well-known/oauth-protected-resource/tools"`}},
		{"fail/malformed-authorization", func() *http.Request { return e.req("GET", "/tools/x", "Authorization", "DPoP a b") },
			400, "invalid_request", nil},
		{"fail/two-authorization", func() *http.Request {
			return e.req("GET", "/tools/x", "Authorization", "DPoP "+good, "Authorization", "DPoP "+good)
		}, 400, "invalid_request", nil},
		{"fail/token-in-query", func() *http.Request { return e.req("GET", "/public/x?access_token="+good) },
			400, "invalid_request", nil},
		{"fail/token-in-query-encoded-name", func() *http.Request { return e.req("GET", "/public/x?%61ccess%5Ftoken="+good) },
			400, "invalid_request", nil},
		{"fail/token-in-form-encoded-name", func() *http.Request {
			r, _ := http.NewRequest("POST", e.srv.URL+"/public/x", strings.NewReader("a=1&access%5ftoken="+good))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 400, "invalid_request", nil},
		{"fail/token-in-form", func() *http.Request {
			r, _ := http.NewRequest("POST", e.srv.URL+"/public/x", strings.NewReader("a=1&access_token="+good))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 400, "invalid_request", nil},
		{"fail/expired-token", func() *http.Request {
			return e.dpop(e.req("GET", "/tools/x"), e.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
		}, 401, "invalid_token", []string{`DPoP error="invalid_token"`}},
		{"fail/unknown-issuer", func() *http.Request {
			return e.dpop(e.req("GET", "/tools/x"), e.token(map[string]any{"iss": "https://stranger.example.com"}))
		}, 401, "invalid_token", []string{`DPoP error="invalid_token"`}},
		{"fail/wrong-aud", func() *http.Request {
			return e.dpop(e.req("GET", "/tools/x"), e.token(map[string]any{"aud": "https://other.example.com"}))
		}, 401, "invalid_token", []string{`DPoP error="invalid_token"`}},
		{"fail/bound-token-as-bearer", func() *http.Request {
			return e.req("GET", "/public/x", "Authorization", "Bearer "+good)
		}, 401, "invalid_token", []string{`Bearer error="invalid_token"`}},
		{"fail/dpop-scheme-unbound-token", func() *http.Request {
			return e.dpop(e.req("GET", "/tools/x"), e.iss.BoundToken(t, nil, "agent-1", "tools:call", nil))
		}, 401, "invalid_token", []string{`DPoP error="invalid_token"`}},
		{"fail/missing-proof", func() *http.Request { return e.req("GET", "/tools/x", "Authorization", "DPoP "+good) },
			401, "invalid_dpop_proof", []string{`DPoP error="invalid_dpop_proof"`, `algs="ES256`}},
		{"fail/two-proofs", func() *http.Request {
			r := e.dpop(e.req("GET", "/tools/x"), good)
			r.Header.Add("DPoP", r.Header.Get("DPoP"))
			return r
		}, 401, "invalid_dpop_proof", []string{`DPoP error="invalid_dpop_proof"`}},
		{"fail/malformed-proof", func() *http.Request {
			return e.req("GET", "/tools/x", "Authorization", "DPoP "+good, "DPoP", "not.a.jwt")
		}, 401, "invalid_dpop_proof", []string{`DPoP error="invalid_dpop_proof"`}},
		{"fail/proof-for-other-uri", func() *http.Request {
			r := e.dpop(e.req("GET", "/tools/other"), good)
			r.URL.Path = "/tools/x"
			return r
		}, 401, "invalid_dpop_proof", []string{`DPoP error="invalid_dpop_proof"`, `error_description="DPoP proof htu does not match the request URI"`}},
		{"fail/missing-scope", func() *http.Request {
			return e.dpop(e.req("GET", "/tools/x"), e.iss.BoundToken(t, e.key, "agent-1", "listings:read", nil))
		}, 403, "insufficient_scope", []string{`DPoP error="insufficient_scope"`, `scope="tools:call"`}},
		{"fail/no-route", func() *http.Request { return e.req("GET", "/nowhere") }, 404, "not_found", nil},
		{"fail/dot-segments", func() *http.Request {
			r := e.req("GET", "/public/x")
			r.URL.Opaque = "/public/../tools/x"
			return r
		}, 400, "invalid_request", nil},
		{"fail/upstream-unreachable", func() *http.Request { return e.req("GET", "/dead/x") }, 502, "bad_gateway", nil},
		{"fail/upstream-timeout", func() *http.Request { return e.req("GET", "/hang/x") }, 504, "gateway_timeout", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(tc.req())
			if res.status != tc.status || res.err.Error != tc.code {
				t.Fatalf("got %d %q (%s), want %d %q", res.status, res.err.Error, res.body, tc.status, tc.code)
			}
			if cc := res.header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("got Cache-Control %q, want no-store", cc)
			}
			if res.err.Description == "" || strings.Contains(res.err.Description, good[:20]) {
				t.Fatalf("got error_description %q, want a fixed text", res.err.Description)
			}
			got := strings.Join(res.header.Values("WWW-Authenticate"), " | ")
			for _, want := range tc.challenge {
				if !strings.Contains(got, want) {
					t.Fatalf("got WWW-Authenticate %q, want it to contain %q", got, want)
				}
			}
			if len(tc.challenge) == 0 && got != "" {
				t.Fatalf("got WWW-Authenticate %q, want none", got)
			}
			if tc.status == 401 && !strings.Contains(got, "resource_metadata=") {
				t.Fatalf("got WWW-Authenticate %q, want resource_metadata on every 401", got)
			}
		})
	}
}

// TestNoTokenChallengeOrder: on a route that also takes Bearer tokens, the
// Bearer challenge comes first (MCP SDK clients read the first one only).
func TestNoTokenChallengeOrder(t *testing.T) {
	e := newEnv(t, `
  - name: mcp
    path_prefix: /mcp
    upstream: http://127.0.0.1:1
    auth: required
    dpop: optional
`)
	res := e.do(e.req("POST", "/mcp"))
	ch := res.header.Values("WWW-Authenticate")
	wantRM := `resource_metadata="` + e.srv.URL + `/.well-known/oauth-protected-resource/mcp"`
	if res.status != 401 || len(ch) != 2 || ch[0] != "Bearer "+wantRM || !strings.HasPrefix(ch[1], "DPoP ") || strings.Contains(ch[1], "error=") {
		t.Fatalf("got %d %q, want 401 with Bearer %s first, then DPoP without error", res.status, ch, wantRM)
	}
}

func TestReplayedProof(t *testing.T) {
	e := newEnv(t, "")
	r := e.dpop(e.req("GET", "/tools/x"), e.token(nil))
	if res := e.do(r); res.status != 200 {
		t.Fatalf("first use: got %d %s, want 200", res.status, res.body)
	}
	again := e.req("GET", "/tools/x", "Authorization", r.Header.Get("Authorization"), "DPoP", r.Header.Get("DPoP"))
	res := e.do(again)
	if res.status != 401 || res.err.Error != "invalid_dpop_proof" || !strings.Contains(res.err.Description, "already been used") {
		t.Fatalf("replay: got %d %s, want 401 invalid_dpop_proof", res.status, res.body)
	}
}

// nonceConfig turns server nonces on.
const nonceConfig = `
dpop:
  nonce: {enabled: true, secret: "0123456789abcdef0123456789abcdef"}
`

func TestNonceAnswers(t *testing.T) {
	e := newEnv(t, nonceConfig)
	tok := e.token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	res := e.do(e.dpop(e.req("GET", "/tools/x"), tok))
	nonce := res.header.Get("DPoP-Nonce")
	if res.status != 401 || res.err.Error != "use_dpop_nonce" || nonce == "" ||
		!strings.Contains(res.header.Get("WWW-Authenticate"), `DPoP error="use_dpop_nonce"`) {
		t.Fatalf("no nonce: got %d %s %q, want 401 use_dpop_nonce with DPoP-Nonce", res.status, res.body, res.header)
	}
	r := e.req("GET", "/tools/x")
	proof, _ := e.key.Proof("GET", r.URL.String(), tok, nonce, e.clock.Now())
	r.Header.Set("Authorization", "DPoP "+tok)
	r.Header.Set("DPoP", proof)
	if res := e.do(r); res.status != 200 || res.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("with nonce: got %d %s, want 200 with a fresh DPoP-Nonce", res.status, res.body)
	}
	// Past its lifetime (5m), the nonce is stale.
	e.clock.Advance(10 * time.Minute)
	stale, _ := e.key.Proof("GET", r.URL.String(), tok, nonce, e.clock.Now())
	r2 := e.req("GET", "/tools/x", "Authorization", "DPoP "+tok, "DPoP", stale)
	if res := e.do(r2); res.status != 401 || res.err.Error != "use_dpop_nonce" {
		t.Fatalf("stale nonce: got %d %s, want 401 use_dpop_nonce", res.status, res.body)
	}
}

func TestIdentityHeaders(t *testing.T) {
	e := newEnv(t, "")
	tok := e.token(map[string]any{"tier": "business"})
	r := e.dpop(e.req("POST", "/tools/x?q=1",
		"X-Auth-Subject", "admin", "X-Auth-Client-Id", "spoofed", "x-auth-extra", "spoofed", "X-Forwarded-For", "6.6.6.6"), tok)
	res := e.do(r)
	if res.status != 200 {
		t.Fatalf("got %d %s, want 200", res.status, res.body)
	}
	h := res.echo.Header
	for name, want := range map[string]string{
		"X-Auth-Subject":    "user-of-agent-1",
		"X-Auth-Client-Id":  "agent-1",
		"X-Auth-Scope":      "tools:call",
		"X-Auth-Tier":       "business",
		"X-Auth-Issuer":     e.iss.URL,
		"X-Auth-Jkt":        e.key.Thumbprint(),
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Host":  strings.TrimPrefix(e.srv.URL, "http://"),
		"X-Forwarded-Proto": "http",
	} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("upstream got %s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"Authorization", "Dpop", "X-Auth-Extra"} {
		if got := h.Get(name); got != "" {
			t.Errorf("upstream got %s = %q, want it removed", name, got)
		}
	}
	if h.Get("X-Request-Id") == "" || len(res.header.Values("X-Request-Id")) != 1 || h.Get("X-Request-Id") != res.header.Get("X-Request-Id") {
		t.Errorf("got request ids %q upstream, %q to the client, want one id", h.Get("X-Request-Id"), res.header.Get("X-Request-Id"))
	}
	if res.echo.Path != "/tools/x" || res.echo.Query != "q=1" || res.echo.Method != "POST" {
		t.Errorf("upstream got %s %s?%s", res.echo.Method, res.echo.Path, res.echo.Query)
	}
	// Anonymous: spoofed identity headers are dropped, the tier says so.
	res = e.do(e.req("GET", "/public/x", "X-Auth-Subject", "admin"))
	if res.echo.Header.Get("X-Auth-Subject") != "" || res.echo.Header.Get("X-Auth-Tier") != "anonymous" {
		t.Errorf("anonymous: upstream got %q", res.echo.Header)
	}
}

// TestTierBudgets: anonymous callers run out at their budget while a client
// with a token goes on to ten times it, and a business token gets more.
func TestTierBudgets(t *testing.T) {
	e := newEnv(t, "")
	count := func(name string, mk func() *http.Request) int {
		for i := 0; i < 500; i++ {
			res := e.do(mk())
			if res.status == 429 {
				if res.err.Error != "rate_limited" || res.header.Get("Retry-After") == "" {
					t.Fatalf("%s: got 429 %s %q, want rate_limited with Retry-After", name, res.body, res.header)
				}
				return i
			}
			if res.status != 200 {
				t.Fatalf("%s: request %d got %d %s", name, i, res.status, res.body)
			}
		}
		return 500
	}
	client := e.token(nil)
	business := e.token(map[string]any{"client_id": "agent-2", "tier": "business"})
	unknownTier := e.token(map[string]any{"client_id": "agent-3", "tier": "platinum"})
	if got := count("anonymous", func() *http.Request { return e.req("GET", "/public/x") }); got != 5 {
		t.Fatalf("anonymous: got %d requests through, want 5", got)
	}
	if got := count("client", func() *http.Request { return e.dpop(e.req("GET", "/public/x"), client) }); got != 50 {
		t.Fatalf("client: got %d requests through, want 50", got)
	}
	if got := count("business", func() *http.Request { return e.dpop(e.req("GET", "/public/x"), business) }); got != 200 {
		t.Fatalf("business: got %d requests through, want 200", got)
	}
	if got := count("unknown tier", func() *http.Request { return e.dpop(e.req("GET", "/public/x"), unknownTier) }); got != 50 {
		t.Fatalf("unknown tier claim: got %d requests through, want the client budget, 50", got)
	}
	// Budgets are per route: the anonymous caller still has /strip/.
	if res := e.do(e.req("GET", "/strip/x")); res.status != 200 {
		t.Fatalf("other route: got %d, want 200", res.status)
	}
	// A minute later the anonymous bucket is full again.
	e.clock.Advance(time.Minute)
	if res := e.do(e.req("GET", "/public/x")); res.status != 200 {
		t.Fatalf("after a minute: got %d, want 200", res.status)
	}
}

func TestRateLimitHeaders(t *testing.T) {
	e := newEnv(t, "")
	now := e.clock.Now()
	for i := 1; i <= 6; i++ {
		res := e.do(e.req("GET", "/public/x"))
		wantRemaining := max(5-i, 0)
		h := res.header
		wantT := int64(i * 12) // 5/m: 12s per token used
		if i == 6 {
			wantT = 60
		}
		// The Unix second the bucket is full again, rounded up.
		wantReset := now.Unix() + wantT
		if now.Nanosecond() > 0 {
			wantReset++
		}
		got := map[string]string{
			"X-RateLimit-Limit":     h.Get("X-RateLimit-Limit"),
			"X-RateLimit-Remaining": h.Get("X-RateLimit-Remaining"),
			"X-RateLimit-Reset":     h.Get("X-RateLimit-Reset"),
			"RateLimit-Policy":      h.Get("RateLimit-Policy"),
			"RateLimit":             h.Get("RateLimit"),
		}
		want := map[string]string{
			"X-RateLimit-Limit":     "5",
			"X-RateLimit-Remaining": strconv.Itoa(wantRemaining),
			"X-RateLimit-Reset":     strconv.FormatInt(wantReset, 10),
			"RateLimit-Policy":      `"anonymous";q=5;w=60`,
			"RateLimit":             `"anonymous";r=` + strconv.Itoa(wantRemaining) + ";t=" + strconv.FormatInt(wantT, 10),
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("request %d: got %s = %q, want %q", i, k, got[k], v)
			}
		}
		if i == 6 && (res.status != 429 || h.Get("Retry-After") != "12") {
			t.Errorf("request 6: got %d, Retry-After %q, want 429, 12", res.status, h.Get("Retry-After"))
		}
	}
}

// TestSSE: the first event reaches the client while the stream is open.
func TestSSE(t *testing.T) {
	e := newEnv(t, "")
	r := e.dpop(e.req("GET", "/sse/events"), e.token(nil))
	resp, err := e.srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "50" {
		t.Fatalf("got %d %q, want 200 with the client's limit headers", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	if line := readLine(t, br); line != "data: first\n" {
		t.Fatalf("got %q, want the first event before the stream ends", line)
	}
	close(e.up.release) // only now does the upstream finish
	readLine(t, br)
	if line := readLine(t, br); line != "data: last\n" {
		t.Fatalf("got %q, want the last event", line)
	}
}

func TestStripPrefixAndRouting(t *testing.T) {
	e := newEnv(t, "")
	res := e.do(e.req("GET", "/strip/a/b?x=1"))
	if res.status != 200 || res.echo.Path != "/base/a/b" || res.echo.Query != "x=1" {
		t.Fatalf("got %d %s %s, want /base/a/b", res.status, res.echo.Path, res.echo.Query)
	}
	// /toolsX is not under /tools: prefixes match whole segments.
	if res := e.do(e.req("GET", "/toolsX")); res.status != 404 {
		t.Fatalf("got %d for /toolsX, want 404", res.status)
	}
}

func TestCORSPreflight(t *testing.T) {
	e := newEnv(t, "")
	res := e.do(e.req("OPTIONS", "/tools/x", "Origin", "https://app.example.com",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, dpop"))
	if res.status != 204 || res.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		res.header.Get("Access-Control-Allow-Headers") != "authorization, dpop" {
		t.Fatalf("preflight: got %d %q, want 204 allowing the origin, no token needed", res.status, res.header)
	}
	res = e.do(e.req("OPTIONS", "/tools/x", "Origin", "https://evil.example.com", "Access-Control-Request-Method", "POST"))
	if res.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: got %q, want no Allow-Origin", res.header)
	}
	// The actual request's answers expose the headers a browser needs.
	res = e.do(e.req("GET", "/tools/x", "Origin", "https://app.example.com"))
	if !strings.Contains(res.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Fatalf("got %q, want WWW-Authenticate exposed", res.header)
	}
}

// TestConcurrentReplay: one proof sent by 64 goroutines at once is
// accepted exactly once.
func TestConcurrentReplay(t *testing.T) {
	e := newEnv(t, "")
	r := e.dpop(e.req("GET", "/tools/x"), e.token(nil))
	authz, proof := r.Header.Get("Authorization"), r.Header.Get("DPoP")
	var wg sync.WaitGroup
	var ok, replayed, limited atomic.Int32
	start := make(chan struct{})
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res := e.do(e.req("GET", "/tools/x", "Authorization", authz, "DPoP", proof))
			switch {
			case res.status == 200:
				ok.Add(1)
			case res.status == 401 && strings.Contains(res.err.Description, "already been used"):
				replayed.Add(1)
			case res.status == 429: // every copy draws on the client's budget (50)
				limited.Add(1)
			default:
				t.Errorf("got %d %s", res.status, res.body)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replayed.Load()+limited.Load() != 63 || replayed.Load() < 49 {
		t.Fatalf("got %d accepted, %d refused as replays, %d over budget; want 1, and the other 63 refused", ok.Load(), replayed.Load(), limited.Load())
	}
}

// TestKeysUnavailable: with the issuer's server stopped from the start,
// token routes answer 503 temporarily_unavailable, anonymous traffic is
// served, and /readyz says why; once the issuer is started the keys load.
func TestKeysUnavailable(t *testing.T) {
	e := newEnv(t, "")
	tok := e.token(nil)
	e.iss.Stop()
	res := e.do(e.dpop(e.req("GET", "/tools/x"), tok))
	if res.status != 503 || res.err.Error != "temporarily_unavailable" || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("got %d %s, want 503 temporarily_unavailable", res.status, res.body)
	}
	if res := e.do(e.req("GET", "/public/x")); res.status != 200 {
		t.Fatalf("anonymous: got %d, want 200", res.status)
	}
	admin := httptest.NewServer(e.gw.AdminHandler())
	defer admin.Close()
	ready := func() int {
		resp, err := http.Get(admin.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := ready(); got != 503 {
		t.Fatalf("readyz: got %d, want 503 while no keys are loaded", got)
	}
	e.iss.Restart(t)
	e.clock.Advance(6 * time.Second) // past min_refresh_interval
	if res := e.do(e.dpop(e.req("GET", "/tools/x"), tok)); res.status != 200 {
		t.Fatalf("issuer back: got %d %s, want 200", res.status, res.body)
	}
	if got := ready(); got != 200 {
		t.Fatalf("readyz: got %d, want 200 once the keys are loaded", got)
	}
}

// TestAuthFailureBudget: an address that keeps failing authentication is
// refused with 429 before any signature is checked; a valid token from
// another address is unaffected, and so is anonymous traffic.
func TestAuthFailureBudget(t *testing.T) {
	e := newEnvWith(t, "  auth_failures: {rate: 3/m}", "")
	bad := e.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	for i := 0; i < 3; i++ {
		if res := e.do(e.dpop(e.req("GET", "/tools/x"), bad)); res.status != 401 {
			t.Fatalf("failure %d: got %d, want 401", i, res.status)
		}
	}
	res := e.do(e.dpop(e.req("GET", "/tools/x"), bad))
	if res.status != 429 || res.err.Error != "rate_limited" || res.header.Get("Retry-After") == "" {
		t.Fatalf("after the budget: got %d %s, want 429 with Retry-After", res.status, res.body)
	}
	// A valid token from the same address is refused too: the check comes
	// before any signature, so it cannot tell.
	if res := e.do(e.dpop(e.req("GET", "/tools/x"), e.token(nil))); res.status != 429 {
		t.Fatalf("valid token from the same address: got %d, want 429", res.status)
	}
	// Anonymous requests carry no credentials to check, and pass.
	if res := e.do(e.req("GET", "/public/x")); res.status != 200 {
		t.Fatalf("anonymous: got %d, want 200", res.status)
	}
	// Twenty seconds later one failure's worth has come back.
	e.clock.Advance(20 * time.Second)
	if res := e.do(e.dpop(e.req("GET", "/tools/x"), e.token(nil))); res.status != 200 {
		t.Fatalf("after refill: got %d %s, want 200", res.status, res.body)
	}
}

// TestNonceChallengeIsNoAuthFailure: a use_dpop_nonce answer is a step of
// RFC 9449 §8/§9, not a failed authentication: clients behind one address
// meeting the nonce challenge do not use up the address's auth_failures
// budget, and their valid tokens keep working.
func TestNonceChallengeIsNoAuthFailure(t *testing.T) {
	e := newEnvWith(t, "  auth_failures: {rate: 3/m}", nonceConfig)
	tok := e.token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	var nonce string
	for i := 0; i < 6; i++ {
		res := e.do(e.dpop(e.req("GET", "/tools/x"), tok))
		if res.status != 401 || res.err.Error != "use_dpop_nonce" {
			t.Fatalf("challenge %d: got %d %s, want 401 use_dpop_nonce", i, res.status, res.body)
		}
		nonce = res.header.Get("DPoP-Nonce")
	}
	r := e.req("GET", "/tools/x")
	proof, _ := e.key.Proof("GET", r.URL.String(), tok, nonce, e.clock.Now())
	r.Header.Set("Authorization", "DPoP "+tok)
	r.Header.Set("DPoP", proof)
	if res := e.do(r); res.status != 200 {
		t.Fatalf("with the nonce after 6 challenges: got %d %s, want 200", res.status, res.body)
	}
}

// TestNonceChallengeNeedsTheBoundKey: a nonce challenge costs the address
// nothing (TestNonceChallengeIsNoAuthFailure), so only the holder of the
// token's key gets one. A stolen token with a proof by another key is a
// failed authentication, and a flood of them meets the auth_failures
// budget (429 before any signature) instead of costing a proof signature
// check each, forever.
func TestNonceChallengeNeedsTheBoundKey(t *testing.T) {
	e := newEnvWith(t, "  auth_failures: {rate: 3/m}", nonceConfig)
	stolen := e.token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	thief := authtest.NewKey(t)
	for i := 0; i < 3; i++ {
		res := e.do(e.dpopWith(e.req("GET", "/tools/x"), stolen, thief))
		if res.status != 401 || res.err.Error != "invalid_dpop_proof" {
			t.Fatalf("proof %d by another key: got %d %s, want 401 invalid_dpop_proof", i, res.status, res.body)
		}
	}
	if res := e.do(e.dpopWith(e.req("GET", "/tools/x"), stolen, thief)); res.status != 429 {
		t.Fatalf("after the budget: got %d %s, want 429", res.status, res.body)
	}
}

func TestRouteOverrideAndIPCap(t *testing.T) {
	e := newEnv(t, `
  - name: tight
    path_prefix: /tight
    upstream: %[2]s
    auth: optional
    rate_limits: {anonymous: 2/m}
`)
	through := func(path string) int {
		for i := 0; i < 20; i++ {
			if res := e.do(e.req("GET", path)); res.status != 200 {
				return i
			}
		}
		return 20
	}
	if got := through("/tight/x"); got != 2 {
		t.Fatalf("route override: got %d through, want 2", got)
	}
	if got := through("/public/x"); got != 5 {
		t.Fatalf("other route keeps the tier budget: got %d through, want 5", got)
	}
	// The per-IP cap counts anonymous calls across routes: 7 in all.
	e = newEnvWith(t, "  anonymous_ip_cap: {rate: 7/m}", "")
	if got := through("/public/x") + through("/strip/x"); got != 7 {
		t.Fatalf("ip cap: got %d through on two routes, want 7", got)
	}
	// Tokens are not capped per IP.
	tok := e.token(nil)
	for i := 0; i < 10; i++ {
		if res := e.do(e.dpop(e.req("GET", "/public/x"), tok)); res.status != 200 {
			t.Fatalf("token %d under the ip cap: got %d, want 200", i, res.status)
		}
	}
}

// TestReplayStoreFull: the memory store never forgets a live proof to make
// room; when it is full a new proof is refused with 503, with on_error
// fail_closed and fail_open alike (fail_open is for a store that fails: a
// full one would let whoever filled it replay at will).
func TestReplayStoreFull(t *testing.T) {
	for _, mode := range []string{"fail_closed", "fail_open"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, "\nreplay: {max_entries: 1, on_error: "+mode+"}\n")
			tok := e.token(nil)
			if res := e.do(e.dpop(e.req("GET", "/tools/x"), tok)); res.status != 200 {
				t.Fatalf("first proof: got %d %s", res.status, res.body)
			}
			res := e.do(e.dpop(e.req("GET", "/tools/x"), tok))
			if res.status != 503 || res.err.Error != "temporarily_unavailable" {
				t.Fatalf("second proof, store full: got %d %s, want 503", res.status, res.body)
			}
		})
	}
}

// TestCORSUpstreamFields: on a route with a cors policy the gateway owns
// the CORS fields of an answer. An upstream that answers every origin with
// its own (a framework's permissive default) does not widen the policy:
// an origin the route does not allow gets no Allow-Origin, and an allowed
// one gets the gateway's values only.
func TestCORSUpstreamFields(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Access-Control-Expose-Headers", "X-Internal-Token")
		w.Write([]byte("{}"))
	}))
	defer up.Close()
	e := newEnv(t, routeTo("permissive", up.URL, "none")+`    cors: {allow_origins: ["https://app.example.com"]}
`)
	for _, tc := range []struct {
		name, origin, allow string
	}{
		{"fail/origin-not-allowed", "https://evil.example.com", ""},
		{"ok/origin-allowed", "https://app.example.com", "https://app.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(e.req("GET", "/permissive/x", "Origin", tc.origin))
			if res.status != 200 {
				t.Fatalf("got %d %s", res.status, res.body)
			}
			h := res.header
			if got := h.Values("Access-Control-Allow-Origin"); strings.Join(got, ",") != tc.allow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allow)
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials %q, want none (the route does not allow credentials)", got)
			}
			if strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Internal-Token") {
				t.Errorf("Access-Control-Expose-Headers %q holds the upstream's", h.Get("Access-Control-Expose-Headers"))
			}
		})
	}
}
