package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/internal/authtest"
)

// newDebugEnv is newEnv with every log line, debug ones included, in
// e.logs: the level a gateway runs at while someone chases a problem.
func newDebugEnv(t testing.TB, extra string) *env {
	t.Helper()
	var mu sync.Mutex
	logs := &strings.Builder{}
	e := &env{t: t, iss: authtest.NewIssuer(t), up: newUpstream(t), key: authtest.NewKey(t), logs: logs}
	text := fmt.Sprintf(baseConfig+extra, e.iss.URL, e.up.URL, "  auth_failures: {rate: 1000/m}")
	cfg, err := config.Parse("test.yaml", []byte(text), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e.cfg = cfg
	e.clock = &fakeClock{now: time.Now()}
	var w io.Writer = lockedWriter{&mu, logs}
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
