package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// forwardAuthConfig enables forward auth; trusted makes the test client
// (127.0.0.1) a trusted proxy, as an ingress would be.
func forwardAuthConfig(trusted bool) string {
	c := "forward_auth:\n  enabled: true\n"
	if trusted {
		c += "server:\n  trusted_proxies: [127.0.0.1/32]\n"
	}
	return c
}

// TestForwardAuth asks the forward-auth endpoint about requests the way
// each ingress describes them, and shows that only the original request's
// method and URL, described by a trusted peer, can pass.
func TestForwardAuth(t *testing.T) {
	const api = "https://api.example.com"
	type proof struct{ method, url string } // what the client signed; zero: no credentials
	for _, tc := range []struct {
		name      string
		untrusted bool
		method    string // of the auth call
		path      string // of the auth call
		hdr       []string
		proof     proof
		status    int
		code      string
		challenge string // a part of WWW-Authenticate
		reason    string // the reason logged
	}{
		{name: "ok/ingress-nginx", method: "GET", path: "/auth",
			hdr:   []string{"X-Original-Method", "POST", "X-Original-URL", api + "/tools/x?q=1", "X-Sent-From", "nginx-ingress-controller"},
			proof: proof{"POST", api + "/tools/x"}, status: 200},
		{name: "ok/traefik", method: "GET", path: "/auth",
			hdr:   []string{"X-Forwarded-Method", "POST", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/tools/x?q=1"},
			proof: proof{"POST", api + "/tools/x"}, status: 200},
		{name: "ok/envoy", method: "POST", path: "/auth/tools/x?q=1",
			hdr:   []string{"Host", "api.example.com", "X-Forwarded-Proto", "https"},
			proof: proof{"POST", api + "/tools/x"}, status: 200},
		{name: "ok/two-descriptions-that-agree", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "POST", "X-Original-URL", api + "/tools/x",
				"X-Forwarded-Method", "POST", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/tools/x"},
			proof: proof{"POST", api + "/tools/x"}, status: 200},
		{name: "ok/anonymous", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", api + "/public/x"}, status: 200},
		{name: "ok/percent-encoded-original-path", method: "GET", path: "/auth",
			hdr:   []string{"X-Original-Method", "GET", "X-Original-URL", api + "/tools/a%2Fb"},
			proof: proof{"GET", api + "/tools/a%2Fb"}, status: 200},

		{name: "fail/untrusted-peer", untrusted: true, method: "GET", path: "/auth",
			hdr:   []string{"X-Original-Method", "POST", "X-Original-URL", api + "/tools/x"},
			proof: proof{"POST", api + "/tools/x"}, status: 400, code: "invalid_request", reason: "forward_auth_untrusted_peer"},
		{name: "fail/untrusted-peer-forged-forwarded-uri", untrusted: true, method: "GET", path: "/auth",
			hdr:   []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/tools/other"},
			proof: proof{"GET", api + "/tools/other"}, status: 400, code: "invalid_request", reason: "forward_auth_untrusted_peer"},
		{name: "fail/untrusted-peer-envoy-form", untrusted: true, method: "GET", path: "/auth/tools/x",
			proof: proof{"GET", "http://api.example.com/tools/x"}, hdr: []string{"Host", "api.example.com"}, status: 400, code: "invalid_request", reason: "forward_auth_untrusted_peer"},
		{name: "fail/proxied-request-forged-forwarded-uri", untrusted: true, method: "GET", path: "/tools/y",
			hdr:   []string{"X-Forwarded-Uri", "/tools/x", "X-Original-URL", "http://127.0.0.1/tools/x"},
			proof: proof{"GET", "SELF/tools/x"}, status: 401, code: "invalid_dpop_proof", challenge: "htu"},
		{name: "fail/proof-for-the-auth-url", method: "GET", path: "/auth",
			hdr:   []string{"X-Original-Method", "GET", "X-Original-URL", api + "/tools/x"},
			proof: proof{"GET", "SELF/auth"}, status: 401, code: "invalid_dpop_proof", challenge: "htu does not match"},
		{name: "fail/proof-for-another-method", method: "GET", path: "/auth",
			hdr:   []string{"X-Original-Method", "DELETE", "X-Original-URL", api + "/tools/x"},
			proof: proof{"GET", api + "/tools/x"}, status: 401, code: "invalid_dpop_proof", challenge: "htm does not match"},
		{name: "fail/nginx-with-client-forged-forwarded-uri", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", api + "/tools/x",
				"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/public/x"},
			status: 400, code: "invalid_request", reason: "forward_auth_conflicting_headers"},
		{name: "fail/traefik-with-client-forged-original-url", method: "GET", path: "/auth",
			hdr: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/tools/x",
				"X-Original-Method", "GET", "X-Original-URL", api + "/public/x"},
			status: 400, code: "invalid_request", reason: "forward_auth_conflicting_headers"},
		{name: "fail/envoy-with-client-forged-forwarded-uri", method: "GET", path: "/auth/tools/x",
			hdr:    []string{"Host", "api.example.com", "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "http", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/public/x"},
			status: 400, code: "invalid_request", reason: "forward_auth_conflicting_headers"},
		{name: "fail/no-description", method: "GET", path: "/auth", status: 400, code: "invalid_request", reason: "forward_auth_no_original_request"},
		{name: "fail/half-a-description", method: "GET", path: "/auth",
			hdr: []string{"X-Original-URL", api + "/public/x"}, status: 400, code: "invalid_request", reason: "forward_auth_malformed"},
		{name: "fail/two-original-urls", method: "GET", path: "/auth",
			hdr:    []string{"X-Original-Method", "GET", "X-Original-URL", api + "/public/x", "X-Original-URL", api + "/tools/x"},
			status: 400, code: "invalid_request", reason: "forward_auth_malformed"},
		{name: "fail/not-http", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", "ftp://api.example.com/public/x"}, status: 400, code: "invalid_request", reason: "forward_auth_malformed"},
		{name: "fail/bad-host", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", "https://user@api.example.com/public/x"}, status: 400, code: "invalid_request", reason: "forward_auth_malformed"},
		{name: "fail/fragment", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", api + "/public/x#y"}, status: 400, code: "invalid_request", reason: "forward_auth_malformed"},
		{name: "fail/dot-segments", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", api + "/public/../tools/x"}, status: 400, code: "invalid_request", reason: "dot_segment"},
		{name: "fail/token-in-query", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", api + "/public/x?access_token=abc"}, status: 400, code: "invalid_request", reason: "token_in_query"},
		{name: "fail/no-token-required-route", method: "GET", path: "/auth",
			hdr:    []string{"X-Original-Method", "GET", "X-Original-URL", api + "/tools/x"},
			status: 401, code: "invalid_token", challenge: `resource_metadata="` + api + `/.well-known/oauth-protected-resource/tools"`},
		{name: "fail/no-route", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "GET", "X-Original-URL", api + "/nowhere"}, status: 404, code: "not_found"},
		{name: "fail/method-not-a-token", method: "GET", path: "/auth",
			hdr: []string{"X-Original-Method", "G(T", "X-Original-URL", api + "/public/x"}, status: 400, code: "invalid_request", reason: "forward_auth_malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, forwardAuthConfig(!tc.untrusted))
			r := e.req(tc.method, tc.path, tc.hdr...)
			if h := r.Header.Get("Host"); h != "" {
				r.Host = h
			}
			tok := e.token(nil)
			if tc.proof.method != "" {
				p, err := e.key.Proof(tc.proof.method, strings.Replace(tc.proof.url, "SELF", e.srv.URL, 1), tok, "", e.clock.Now())
				if err != nil {
					t.Fatal(err)
				}
				r.Header.Set("Authorization", "DPoP "+tok)
				r.Header.Set("DPoP", p)
			}
			res := e.do(r)
			if res.status != tc.status || res.err.Error != tc.code {
				t.Fatalf("got %d %q (%s), want %d %q", res.status, res.err.Error, res.body, tc.status, tc.code)
			}
			if tc.challenge != "" {
				if got := strings.Join(res.header.Values("WWW-Authenticate"), " | "); !strings.Contains(got, tc.challenge) {
					t.Fatalf("got WWW-Authenticate %q, want it to contain %q", got, tc.challenge)
				}
			}
			if tc.reason != "" && !strings.Contains(e.logs.String(), `"reason":"`+tc.reason+`"`) {
				t.Fatalf("got log %s, want reason %s", e.logs, tc.reason)
			}
			if strings.Contains(e.logs.String(), tok[:40]) {
				t.Fatalf("the log holds the token")
			}
			if tc.status != 200 {
				return
			}
			if len(res.body) != 0 || res.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("got body %q, Cache-Control %q; want an empty, uncacheable 200", res.body, res.header.Get("Cache-Control"))
			}
			want := map[string]string{"X-Auth-Subject": "user-of-agent-1", "X-Auth-Client-Id": "agent-1", "X-Auth-Scope": "tools:call",
				"X-Auth-Tier": "client", "X-Auth-Issuer": e.iss.URL, "X-Auth-Jkt": e.key.Thumbprint(),
				"X-Ratelimit-Limit": "50", "X-Ratelimit-Remaining": "49",
				envoyRemoveHeader: "authorization, dpop"}
			if tc.proof.method == "" {
				want = map[string]string{"X-Auth-Tier": "anonymous", "X-Auth-Subject": "", "X-Ratelimit-Limit": "5", "X-Ratelimit-Remaining": "4",
					envoyRemoveHeader: "authorization, dpop, x-auth-subject, x-auth-client-id, x-auth-scope, x-auth-issuer, x-auth-jkt"}
			}
			for k, v := range want {
				if got := res.header.Get(k); got != v {
					t.Errorf("got %s %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(e.logs.String(), `"forward_auth":true`) {
				t.Errorf("got log %s, want the forward-auth call marked", e.logs)
			}
		})
	}
}

// TestForwardAuthReplay: a proof passes one forward-auth call; the same
// proof again is a replay, whichever ingress form carries it.
func TestForwardAuthReplay(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true))
	tok := e.token(nil)
	proof, _ := e.key.Proof("POST", "https://api.example.com/tools/x", tok, "", e.clock.Now())
	creds := []string{"Authorization", "DPoP " + tok, "DPoP", proof}
	nginx := append([]string{"X-Original-Method", "POST", "X-Original-URL", "https://api.example.com/tools/x"}, creds...)
	if res := e.do(e.req("GET", "/auth", nginx...)); res.status != 200 {
		t.Fatalf("first use: got %d %s, want 200", res.status, res.body)
	}
	traefik := append([]string{"X-Forwarded-Method", "POST", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/tools/x"}, creds...)
	for _, r := range []*http.Request{e.req("GET", "/auth", nginx...), e.req("GET", "/auth", traefik...)} {
		res := e.do(r)
		if res.status != 401 || res.err.Error != "invalid_dpop_proof" || !strings.Contains(res.err.Description, "already been used") {
			t.Fatalf("replay: got %d %s, want 401 invalid_dpop_proof", res.status, res.body)
		}
		if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), `DPoP error="invalid_dpop_proof"`) {
			t.Fatalf("replay: got WWW-Authenticate %q, want a DPoP challenge", res.header.Get("WWW-Authenticate"))
		}
	}
}

// TestForwardAuthLimits: an anonymous caller (known by the X-Forwarded-For
// the ingress wrote) uses up its budget; the 429 carries Retry-After and the
// rate-limit fields, and another caller's budget is untouched.
func TestForwardAuthLimits(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true))
	call := func(client string) result {
		return e.do(e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "https://api.example.com/public/x", "X-Forwarded-For", client))
	}
	for i := 4; i >= 0; i-- {
		res := call("198.51.100.7")
		if res.status != 200 || res.header.Get("X-RateLimit-Remaining") != strconv.Itoa(i) {
			t.Fatalf("call %d: got %d remaining %q, want 200 with %d left", 5-i, res.status, res.header.Get("X-RateLimit-Remaining"), i)
		}
	}
	res := call("198.51.100.7")
	if res.status != 429 || res.err.Error != "rate_limited" || res.header.Get("Retry-After") == "" ||
		res.header.Get("X-RateLimit-Remaining") != "0" || res.header.Get("RateLimit-Policy") != `"anonymous";q=5;w=60` {
		t.Fatalf("over budget: got %d %s %q, want 429 rate_limited with Retry-After and the rate-limit fields", res.status, res.body, res.header)
	}
	if res := call("198.51.100.8"); res.status != 200 {
		t.Fatalf("another caller: got %d, want 200", res.status)
	}
}

// TestForwardAuthNonce: with server nonces on, the first call gets 401
// use_dpop_nonce and a nonce; the proof that carries it passes, and the 200
// hands out the next nonce.
func TestForwardAuthNonce(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true)+nonceConfig)
	tok := e.token(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	call := func(nonce string) result {
		proof, _ := e.key.Proof("GET", "https://api.example.com/tools/x", tok, nonce, e.clock.Now())
		return e.do(e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "https://api.example.com/tools/x",
			"Authorization", "DPoP "+tok, "DPoP", proof))
	}
	res := call("")
	nonce := res.header.Get("DPoP-Nonce")
	if res.status != 401 || res.err.Error != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("no nonce: got %d %s, want 401 use_dpop_nonce with DPoP-Nonce", res.status, res.body)
	}
	if res := call(nonce); res.status != 200 || res.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("with nonce: got %d %s %q, want 200 with a DPoP-Nonce", res.status, res.body, res.header)
	}
}

// TestForwardAuthUnavailable: with no issuer keys obtainable, a call with a
// token answers 503, as the proxy would.
func TestForwardAuthUnavailable(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true))
	e.iss.Down.Store(true)
	tok := e.token(nil)
	proof, _ := e.key.Proof("GET", "https://api.example.com/tools/x", tok, "", e.clock.Now())
	res := e.do(e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "https://api.example.com/tools/x",
		"Authorization", "DPoP "+tok, "DPoP", proof))
	if res.status != 503 || res.err.Error != "temporarily_unavailable" {
		t.Fatalf("got %d %s, want 503 temporarily_unavailable", res.status, res.body)
	}
}

// TestForwardAuthPublicURL: public_url is the origin of htu for forward
// auth as for the proxy; routing still uses the described host and path.
func TestForwardAuthPublicURL(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true)+"  public_url: https://api.example.com\n")
	tok := e.token(nil)
	proof, _ := e.key.Proof("GET", "https://api.example.com/tools/x", tok, "", e.clock.Now())
	res := e.do(e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "http://ingress.internal/tools/x",
		"Authorization", "DPoP "+tok, "DPoP", proof))
	if res.status != 200 {
		t.Fatalf("got %d %s, want 200", res.status, res.body)
	}
}

// TestForwardAuthDisabled: without forward_auth.enabled, /auth is an
// ordinary path.
func TestForwardAuthDisabled(t *testing.T) {
	e := newEnv(t, "server:\n  trusted_proxies: [127.0.0.1/32]\n")
	res := e.do(e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "https://api.example.com/public/x"))
	if res.status != 404 || res.err.Error != "not_found" {
		t.Fatalf("got %d %s, want 404 not_found", res.status, res.body)
	}
}
