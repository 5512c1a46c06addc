package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/dpopclient"
	"github.com/dpopgate/dpopgate/gateway/internal/authtest"
)

// upstream is an echo server: it answers with what it received, so tests
// can see what the gateway forwarded. /sse streams, /hang waits for the
// client to give up.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	last *http.Request
	// lastBody is what the last request to / carried, and lastBodyErr
	// why reading it stopped short, if it did.
	lastBody    string
	lastBodyErr error
	// release ends an /sse stream.
	release chan struct{}
}

type echo struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Query  string      `json:"query"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

// upstreamMark is a field of every answer the upstream writes, to tell
// them from the gateway's own.
const upstreamMark = "X-Test-Upstream"

func newUpstream(t testing.TB) *upstream {
	u := &upstream{release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/sse/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-u.release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "data: last\n\n")
	})
	mux.HandleFunc("/tools/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Auth-Client-Id") == "" {
			http.Error(w, "not an authenticated upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		brw.WriteString("echo: " + line)
		brw.Flush()
	})
	mux.HandleFunc("/hang/", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		u.mu.Lock()
		u.last, u.lastBody, u.lastBodyErr = r, string(body), err
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-RateLimit-Limit", "999999") // the gateway's must win
		json.NewEncoder(w).Encode(echo{r.Method, r.URL.Path, r.URL.RawQuery, r.Header, string(body)})
	})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(upstreamMark, "1")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		u.Server.Close()
	})
	return u
}

// env is a whole gateway on httptest, with its issuer and upstream.
type env struct {
	t     testing.TB
	iss   *authtest.Issuer
	up    *upstream
	gw    *Gateway
	srv   *httptest.Server
	key   *dpopclient.Key
	clock *fakeClock
	logs  *logBuffer
	cfg   *config.Config
}

// logBuffer is a gateway's log, safe to read while the gateway writes it.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// fakeClock is a settable clock; tests move it instead of sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// baseConfig is the config of most tests; %[1]s is the issuer, %[2]s the
// upstream, %[3]s more rate_limits keys (indented by two spaces).
const baseConfig = `
issuers:
  - issuer: %[1]s
    audiences: [https://api.example.com]
    algorithms: [ES256]
rate_limits:
  tiers:
    anonymous: {rate: 5/m}
    client: {rate: 50/m}
    business: {rate: 200/m}
%[3]s
routes:
  - name: public
    path_prefix: /public
    upstream: %[2]s
    auth: optional
    dpop: optional
  - name: tools
    path_prefix: /tools
    upstream: %[2]s
    auth: required
    scopes: [tools:call]
    cors: {allow_origins: ["https://app.example.com"]}
  - name: strip
    path_prefix: /strip/
    upstream: %[2]s/base
    strip_prefix: true
    auth: none
  - name: sse
    path_prefix: /sse
    upstream: %[2]s
    auth: required
  - name: hang
    path_prefix: /hang
    upstream: %[2]s
    auth: none
    timeout: 200ms
  - name: dead
    path_prefix: /dead
    upstream: http://127.0.0.1:1
    auth: none
`

// routeTo is one more route for newEnv's extra: /name and below, to
// upstream, with auth (none, optional or required).
func routeTo(name, upstream, auth string) string {
	return fmt.Sprintf("\n  - name: %[1]s\n    path_prefix: /%[1]s\n    upstream: %[2]s\n    auth: %[3]s\n", name, upstream, auth)
}

// newEnv starts a gateway on baseConfig followed by extra (more routes, or
// other top-level sections), with the default auth_failures budget of 100/m.
func newEnv(t testing.TB, extra string) *env {
	t.Helper()
	return newEnvWith(t, "  auth_failures: {rate: 100/m}", extra)
}

// newEnvWith is newEnv with other rate_limits keys. Both texts may use
// %[1]s (issuer) and %[2]s (upstream).
func newEnvWith(t testing.TB, rateLimits, extra string) *env {
	t.Helper()
	logs := &logBuffer{}
	e := startEnv(t, rateLimits, extra, logs)
	e.logs = logs
	return e
}

// startEnv is newEnvWith with the gateway's JSON log lines written to log,
// which must be safe for concurrent use; e.logs is nil.
func startEnv(t testing.TB, rateLimits, extra string, log io.Writer) *env {
	t.Helper()
	e := &env{t: t, iss: authtest.NewIssuer(t), up: newUpstream(t), key: authtest.NewKey(t)}
	text := fmt.Sprintf(baseConfig+extra, e.iss.URL, e.up.URL, rateLimits)
	cfg, err := config.Parse("test.yaml", []byte(text), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e.cfg = cfg
	e.clock = &fakeClock{now: time.Now()}
	e.gw, err = New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(log, nil)), Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gw.Close() }) // after the server has closed
	e.srv = httptest.NewServer(e.gw)
	t.Cleanup(e.srv.Close)
	return e
}

// replica is a second gateway built from e's config, as another replica
// would be: its own backends (its own Redis client, when the config names
// Redis), the same issuer, upstream, client key and clock.
func (e *env) replica() *env {
	e.t.Helper()
	r := *e
	var err error
	r.gw, err = New(e.cfg, Options{Clock: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.gw.Close() })
	r.srv = httptest.NewServer(r.gw)
	e.t.Cleanup(r.srv.Close)
	return &r
}

// req builds a request to the gateway.
func (e *env) req(method, path string, hdr ...string) *http.Request {
	r, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

// dpop adds a DPoP token and a fresh proof for r to r.
func (e *env) dpop(r *http.Request, token string) *http.Request {
	return e.dpopWith(r, token, e.key)
}

func (e *env) dpopWith(r *http.Request, token string, k *dpopclient.Key) *http.Request {
	proof, err := k.Proof(r.Method, r.URL.String(), token, "", e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	r.Header.Set("Authorization", "DPoP "+token)
	r.Header.Set("DPoP", proof)
	return r
}

// result is an answer, read whole.
type result struct {
	status int
	header http.Header
	body   []byte
	err    struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	echo echo
}

func (e *env) do(r *http.Request) result {
	e.t.Helper()
	resp, err := e.srv.Client().Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	res := result{status: resp.StatusCode, header: resp.Header}
	res.body, _ = io.ReadAll(resp.Body)
	json.Unmarshal(res.body, &res.err)
	json.Unmarshal(res.body, &res.echo)
	return res
}

// postForm posts body to /public/x with the headers given as name and
// value pairs (Content-Type none unless given), on a full anonymous
// budget, and returns the answer and what the upstream got of the body.
func (e *env) postForm(body string, header ...string) (res result, upstreamGot string) {
	e.t.Helper()
	e.clock.Advance(time.Minute)
	r, _ := http.NewRequest("POST", e.srv.URL+"/public/x", strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	res = e.do(r)
	e.up.mu.Lock()
	upstreamGot = e.up.lastBody
	e.up.lastBody, e.up.lastBodyErr = "", nil
	e.up.mu.Unlock()
	return res, upstreamGot
}

// token is a valid DPoP-bound token for client "agent-1" with scope
// tools:call, bound to the env's key.
func (e *env) token(extra map[string]any) string {
	return e.iss.BoundToken(e.t, e.key, "agent-1", "tools:call", extra)
}

func readLine(t testing.TB, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	return line
}

var _ = context.Background
