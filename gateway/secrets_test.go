package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/internal/authtest"
	"github.com/dpopgate/dpopgate/replay/redistest"
	"github.com/redis/go-redis/v9"
)

// newDebugEnv is newEnv with every log line, debug ones included, in
// e.logs: the level a gateway runs at while someone chases a problem.
func newDebugEnv(t testing.TB, extra string) *env {
	t.Helper()
	logs := &logBuffer{}
	e := &env{t: t, iss: authtest.NewIssuer(t), up: newUpstream(t), key: authtest.NewKey(t), logs: logs}
	text := fmt.Sprintf(baseConfig+extra, e.iss.URL, e.up.URL, "  auth_failures: {rate: 1000/m}")
	cfg, err := config.Parse("test.yaml", []byte(text), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e.cfg = cfg
	e.clock = &fakeClock{now: time.Now()}
	var w io.Writer = logs
	e.gw, err = New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gw.Close() })
	e.srv = httptest.NewServer(e.gw)
	t.Cleanup(e.srv.Close)
	return e
}

// leaked reports the first 16-byte window of secret found in text, or "".
func leaked(text, secret string) string {
	const n = 16
	if len(secret) < n {
		if strings.Contains(text, secret) {
			return secret
		}
		return ""
	}
	for i := 0; i+n <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+n]) {
			return secret[i : i+n]
		}
	}
	return ""
}

// assertNoLeak fails t when any 16-byte window of a secret shows in text.
func assertNoLeak(t testing.TB, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if w := leaked(text, s); w != "" {
			t.Errorf("%s holds %q, part of a credential:\n%s", where, w, text)
		}
	}
}

// TestForwardAuthMalformedURINotLogged: an ingress describes a request whose
// path has a bad percent-escape and whose query carries an access token
// (which the gateway refuses to read from a query). The refusal's cause,
// logged at debug, must not quote the query.
func TestForwardAuthMalformedURINotLogged(t *testing.T) {
	e := newDebugEnv(t, forwardAuthConfig(true))
	tok := e.token(nil)
	for _, hdr := range [][]string{
		{"X-Original-Method", "GET", "X-Original-URL", "https://api.example.com/tools/x%zz?access_token=" + tok},
		{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/tools/x%zz?access_token=" + tok},
	} {
		res := e.do(e.req("GET", "/auth", hdr...))
		if res.status != 400 {
			t.Fatalf("status %d, want 400: %s", res.status, res.body)
		}
		assertNoLeak(t, "the answer", string(res.body)+fmt.Sprint(res.header), tok)
	}
	assertNoLeak(t, "the log", e.logs.String(), tok)
}

// TestNoCredentialInLogsOrAnswers runs a matrix of requests, good and bad,
// through a gateway logging at debug, and looks for any 16-byte window of
// the tokens and proofs sent in the log, in the answers (bodies and
// headers) and in /metrics and /usage.
func TestNoCredentialInLogsOrAnswers(t *testing.T) {
	const nonceSecret = "nonce-secret-0123456789-abcdefghijklmnop"
	e := newDebugEnv(t, forwardAuthConfig(true))
	api := "https://api.example.com"
	tok := e.token(nil)
	expired := e.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	unbound := e.iss.BoundToken(t, nil, "agent-1", "tools:call", nil)
	other := authtest.NewIssuer(t).BoundToken(t, e.key, "agent-1", "tools:call", nil)
	secrets := []string{tok, expired, unbound, other, nonceSecret}
	var answers strings.Builder
	do := func(name string, r *result) {
		fmt.Fprintf(&answers, "== %s %d\n%v\n%s\n", name, r.status, r.header, r.body)
	}
	proof := func(method, u, token string) string {
		p, err := e.key.Proof(method, u, token, "", e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, p)
		return p
	}
	tamper := func(s string) string { return s[:len(s)-4] + "AAAA" }

	type call struct {
		name   string
		method string
		path   string
		hdr    []string
		body   string
	}
	url := func(p string) string { return e.srv.URL + p }
	p1 := proof("GET", url("/tools/x"), tok)
	calls := []call{
		{"ok", "GET", "/tools/x?q=zzqueryzz-XYZW", []string{"Authorization", "DPoP " + tok, "DPoP", p1}, ""},
		{"replay", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "DPoP", p1}, ""},
		{"bound-as-bearer", "GET", "/public/x", []string{"Authorization", "Bearer " + tok}, ""},
		{"unbound-as-dpop", "GET", "/tools/x", []string{"Authorization", "DPoP " + unbound, "DPoP", proof("GET", url("/tools/x"), unbound)}, ""},
		{"expired", "GET", "/tools/x", []string{"Authorization", "DPoP " + expired, "DPoP", proof("GET", url("/tools/x"), expired)}, ""},
		{"unknown-issuer", "GET", "/tools/x", []string{"Authorization", "DPoP " + other, "DPoP", proof("GET", url("/tools/x"), other)}, ""},
		{"bad-signature", "GET", "/tools/x", []string{"Authorization", "DPoP " + tamper(tok), "DPoP", proof("GET", url("/tools/x"), tok)}, ""},
		{"not-a-jwt", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok[:40] + "!" + tok[41:]}, ""},
		{"token-garbage", "GET", "/tools/x", []string{"Authorization", "DPoP " + strings.ReplaceAll(tok, ".", "")}, ""},
		{"two-authorizations", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "Authorization", "DPoP " + tok}, ""},
		{"other-scheme", "GET", "/tools/x", []string{"Authorization", "Basic " + tok}, ""},
		{"no-proof", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok}, ""},
		{"two-proofs", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "DPoP", proof("GET", url("/tools/x"), tok), "DPoP", proof("GET", url("/tools/x"), tok)}, ""},
		{"proof-as-token", "GET", "/tools/x", []string{"Authorization", "DPoP " + p1, "DPoP", tok}, ""},
		{"bad-proof-signature", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "DPoP", tamper(proof("GET", url("/tools/x"), tok))}, ""},
		{"proof-garbage", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "DPoP", strings.ReplaceAll(proof("GET", url("/tools/x"), tok), ".", "~")}, ""},
		{"wrong-htu", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "DPoP", proof("GET", url("/tools/y"), tok)}, ""},
		{"wrong-htm", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "DPoP", proof("POST", url("/tools/x"), tok)}, ""},
		{"wrong-ath", "GET", "/tools/x", []string{"Authorization", "DPoP " + tok, "DPoP", proof("GET", url("/tools/x"), expired)}, ""},
		{"token-in-query", "GET", "/public/x?access_token=" + tok, nil, ""},
		{"token-in-form", "POST", "/public/x", []string{"Content-Type", "application/x-www-form-urlencoded"}, "a=1&access_token=" + tok},
		{"dead-upstream", "GET", "/dead/x?q=zzqueryzz-XYZW", nil, ""},
		{"upstream-timeout", "GET", "/hang/x?q=zzqueryzz-XYZW", nil, ""},
		{"bad-path", "GET", "/tools/a/../x?access_token=" + tok, nil, ""},
		{"fa-ok", "GET", "/auth", []string{"X-Original-Method", "GET", "X-Original-URL", api + "/tools/x?q=zzqueryzz-XYZW",
			"Authorization", "DPoP " + tok, "DPoP", proof("GET", api+"/tools/x", tok)}, ""},
		{"fa-query-token", "GET", "/auth", []string{"X-Original-Method", "GET", "X-Original-URL", api + "/tools/x?access_token=" + tok}, ""},
		{"fa-traefik-query-token", "GET", "/auth", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Uri", "/tools/x%zz?access_token=" + tok}, ""},
		{"fa-envoy-query-token", "GET", "/auth/tools/x?access_token=" + tok, []string{"Host", "api.example.com"}, ""},
		{"fa-bad-proof", "GET", "/auth", []string{"X-Original-Method", "GET", "X-Original-URL", api + "/tools/x",
			"Authorization", "DPoP " + tok, "DPoP", proof("GET", api+"/tools/y", tok)}, ""},
	}
	for _, c := range calls {
		r := e.req(c.method, c.path, c.hdr...)
		if c.body != "" {
			r.Body = io.NopCloser(strings.NewReader(c.body))
			r.ContentLength = int64(len(c.body))
		}
		if c.name == "fa-envoy-query-token" {
			r.Host = "api.example.com"
		}
		res := e.do(r)
		do(c.name, &res)
	}
	// A nonce-enabled gateway: its secret must not show anywhere either.
	n := newDebugEnv(t, "dpop:\n  nonce: {enabled: true, secret: "+nonceSecret+"}\n")
	ntok := n.token(nil)
	secrets = append(secrets, ntok)
	res := n.do(n.dpop(n.req("GET", "/tools/x"), ntok))
	do("nonce-challenge", &res)

	admin := &strings.Builder{}
	for _, g := range []*env{e, n} {
		srv := httptest.NewServer(g.gw.AdminHandler())
		for _, p := range []string{"/metrics", "/usage", "/readyz"} {
			resp, err := srv.Client().Get(srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			admin.Write(b)
		}
		srv.Close()
	}
	assertNoLeak(t, "the answers", answers.String(), secrets...)
	assertNoLeak(t, "the log", e.logs.String()+n.logs.String(), secrets...)
	assertNoLeak(t, "the admin listener", admin.String(), secrets...)
	for _, text := range []string{e.logs.String(), admin.String()} {
		if strings.Contains(text, "zzqueryzz") {
			t.Errorf("a query string reached the log or the metrics:\n%s", text)
		}
	}
}

// TestIntrospectionNoCredentialLogged: whatever the introspection endpoint
// does (fails, echoes the request, answers nonsense, hangs, is gone), the
// opaque token and the gateway's client secret stay out of the debug log,
// the answers and the metrics.
func TestIntrospectionNoCredentialLogged(t *testing.T) {
	const secret = "gw-client-secret-0123456789abcdef"
	var mode atomic.Value
	mode.Store("")
	intro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		user, pass, _ := r.BasicAuth()
		echoed := string(body) + " " + user + ":" + pass
		switch mode.Load().(string) {
		case "500":
			http.Error(w, "cannot introspect "+echoed, 500)
		case "not-json":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, "{not json %s", echoed)
		case "bad-iss":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"active": true, "iss": "https://other.example", "client_id": "c"})
		case "bad-claims": // the request echoed where numbers and objects belong
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"active": true, "client_id": "c", "exp": echoed, "cnf": echoed, "scp": map[string]string{"x": echoed}})
		case "hang":
			<-r.Context().Done()
		default:
			json.NewEncoder(w).Encode(map[string]any{"active": false})
		}
	}))
	defer intro.Close()
	e, d := newDevIssuerEnv(t, slog.LevelDebug, func(issuer, upstream, gateway string) string {
		return fmt.Sprintf(`
issuers:
  - issuer: %[1]s
    audiences: [%[3]s]
    algorithms: [ES256]
    introspection:
      endpoint: %[4]s/introspect
      client_id: gateway
      client_secret: %[5]s
      cache_ttl: 0s
      negative_cache_ttl: 0s
      timeout: 200ms
routes:
  - name: jwt
    path_prefix: /jwt
    upstream: %[2]s
    auth: required
`, issuer, upstream, gateway, intro.URL, secret)
	})
	logs := e.logs

	tok := d.token(t, "opaque-agent", "opaque-secret", e.key)
	var answers strings.Builder
	for _, m := range []string{"inactive", "500", "not-json", "bad-iss", "bad-claims", "hang", "gone"} {
		mode.Store(m)
		if m == "gone" {
			intro.Close()
		}
		res := e.do(e.dpop(e.req("GET", "/jwt/x"), tok))
		if res.status == 200 {
			t.Errorf("%s: 200", m)
		}
		fmt.Fprintf(&answers, "%s %d %v %s\n", m, res.status, res.header, res.body)
	}
	admin := httptest.NewServer(e.gw.AdminHandler())
	defer admin.Close()
	resp, err := admin.Client().Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assertNoLeak(t, "the answers", answers.String(), tok, secret)
	assertNoLeak(t, "the log", logs.String(), tok, secret)
	assertNoLeak(t, "the metrics", string(metrics), tok, secret)
}

// redisPrintf is a go-redis logger writing to a test's log buffer.
type redisPrintf struct{ w io.Writer }

func (l redisPrintf) Printf(_ context.Context, format string, v ...any) {
	fmt.Fprintf(l.w, format+"\n", v...)
}

// TestRedisPasswordNotLogged: a Redis that refuses the password, and then
// one that is gone: the password shows in no log line (the gateway's at
// debug, and go-redis's own), answer, /readyz or /metrics. The replay keys
// in Redis hold neither the proof nor the token.
func TestRedisPasswordNotLogged(t *testing.T) {
	const right, wrong = "right-redis-password-0123456789", "wrong-redis-password-0123456789"
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	if err := rc.ConfigSet(context.Background(), "requirepass", right).Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	logs := &logBuffer{}
	redis.SetLogger(redisPrintf{logs})
	defer redis.SetLogger(redisPrintf{io.Discard})

	var answers strings.Builder
	var tokens []string
	for _, redisYAML := range []string{
		"  url: redis://:" + wrong + "@" + srv.Addr() + "\n",
		"  url: redis://default:" + wrong + "@" + srv.Addr() + "\n",
		"  url: redis://" + srv.Addr() + "\n  password: " + wrong + "\n",
		"  url: redis://:" + right + "@" + srv.Addr() + "\n",
	} {
		e := newDebugEnv(t, `  - name: api
    path_prefix: /api
    upstream: %[2]s
    auth: required
replay:
  backend: redis
redis:
`+redisYAML)
		tok := e.token(nil)
		tokens = append(tokens, tok)
		res := e.do(e.dpop(e.req("GET", "/api/x"), tok))
		fmt.Fprintf(&answers, "%d %v %s\n", res.status, res.header, res.body)
		admin := httptest.NewServer(e.gw.AdminHandler())
		for _, p := range []string{"/readyz", "/metrics"} {
			resp, err := admin.Client().Get(admin.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers.Write(b)
		}
		admin.Close()
		logs.Write([]byte(e.logs.String()))
		if strings.Contains(redisYAML, right) {
			if res.status != 200 {
				t.Fatalf("with the right password: %d %s", res.status, res.body)
			}
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: right})
			keys, err := rc.Keys(context.Background(), "*").Result()
			rc.Close()
			if err != nil || len(keys) == 0 {
				t.Fatalf("keys: %v %v", keys, err)
			}
			assertNoLeak(t, "the Redis keys", strings.Join(keys, "\n"), tok)
		}
	}
	for _, s := range []string{right, wrong} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds a Redis password:\n%s", logs.String())
		}
		if strings.Contains(answers.String(), s) {
			t.Errorf("an answer holds a Redis password:\n%s", answers.String())
		}
	}
	assertNoLeak(t, "the log", logs.String(), tokens...)
}
