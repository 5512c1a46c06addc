package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay/redistest"
)

// publicURL is the origin both replicas of a test serve: proofs are made
// for it, so that any replica takes them, as behind a load balancer.
const publicURL = "https://api.example.com"

// clientBudget is the client tier's budget on the /api route of the Redis
// tests: 100 an hour, so that nothing refills while a test runs on Redis's
// real clock.
const clientBudget = 100

// newRedisEnv is a gateway with the replay store and the limiter on the
// Redis that redisYAML (the body of the redis section) names, the failure
// modes given, and a route /api that needs a token.
func newRedisEnv(t *testing.T, redisYAML, replayOnError, limitsOnError string) *env {
	t.Helper()
	rateLimits := "  backend: redis\n  on_error: " + limitsOnError + "\n  auth_failures: {rate: 100/m}"
	extra := `  - name: api
    path_prefix: /api
    upstream: %[2]s
    auth: required
    rate_limits: {client: 100/h}
server:
  public_url: ` + publicURL + `
replay:
  backend: redis
  on_error: ` + replayOnError + `
redis:
` + redisYAML
	return newEnvWith(t, rateLimits, extra)
}

// oneServer is the redis section for one server, with the default
// timeout, 200ms.
func oneServer(s *redistest.Server) string {
	return "  url: " + s.URL() + "\n"
}

// oneServerPatient is oneServer with a 2s timeout, for tests whose
// subject is not timing: 64 requests verifying ECDSA signatures at once
// under the race detector, on two CPUs, can keep a goroutine off the CPU
// for longer than 200ms between its deadline being set and its write.
func oneServerPatient(s *redistest.Server) string {
	return "  url: " + s.URL() + "\n  timeout: 2s\n"
}

// signed is a GET of path to e with token and a fresh proof for
// publicURL+path.
func (e *env) signed(path, token string) *http.Request {
	e.t.Helper()
	r := e.req("GET", path)
	proof, err := e.key.Proof("GET", publicURL+path, token, "", e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	r.Header.Set("Authorization", "DPoP "+token)
	r.Header.Set("DPoP", proof)
	return r
}

// resend is a request to e with r's path and credentials: a replay.
func (e *env) resend(r *http.Request) *http.Request {
	return e.req(r.Method, r.URL.Path, "Authorization", r.Header.Get("Authorization"), "DPoP", r.Header.Get("DPoP"))
}

func isReplayed(res result) bool {
	return res.status == 401 && res.err.Error == "invalid_dpop_proof" && strings.Contains(res.err.Description, "already been used")
}

// TestRedisReplayAcrossReplicas: a proof accepted by one replica is
// refused by the other.
func TestRedisReplayAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedisEnv(t, oneServer(srv), "fail_closed", "fail_closed")
	b := a.replica()
	r := a.signed("/api/x", a.token(nil))
	if res := a.do(r); res.status != 200 {
		t.Fatalf("first use, replica a: got %d %s, want 200", res.status, res.body)
	}
	if res := b.do(b.resend(r)); !isReplayed(res) {
		t.Fatalf("replay, replica b: got %d %s, want 401 invalid_dpop_proof, already used", res.status, res.body)
	}
	if res := a.do(a.resend(r)); !isReplayed(res) {
		t.Fatalf("replay, replica a: got %d %s, want 401 invalid_dpop_proof, already used", res.status, res.body)
	}
}

// TestRedisConcurrentReplayAcrossReplicas: 64 copies of one proof, sent at
// once and spread over two replicas, are accepted exactly once.
func TestRedisConcurrentReplayAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedisEnv(t, oneServerPatient(srv), "fail_closed", "fail_closed")
	envs := []*env{a, a.replica()}
	token := a.token(nil)
	r := a.signed("/api/x", token)
	var wg sync.WaitGroup
	var ok, replayed atomic.Int32
	start := make(chan struct{})
	for i := range 64 {
		e := envs[i%2]
		wg.Go(func() {
			<-start
			switch res := e.do(e.resend(r)); {
			case res.status == 200:
				ok.Add(1)
			case isReplayed(res):
				replayed.Add(1)
			default:
				t.Errorf("got %d %s", res.status, res.body)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != 63 {
		t.Fatalf("got %d accepted, %d refused as replays; want 1 and 63", ok.Load(), replayed.Load())
	}
	// The claim and the decision go to Redis together, so each copy took
	// a token, the replays too: the documented cost of one round trip.
	res := envs[1].do(envs[1].signed("/api/x", token))
	if got, want := res.header.Get("X-RateLimit-Remaining"), "35"; res.status != 200 || got != want {
		t.Fatalf("after the race: got %d, remaining %q, want 200 with %s left of %d (64 copies and this request taken)", res.status, got, want, clientBudget)
	}
}

// TestRedisSharedBudget: a caller sending to two replicas in turn gets its
// budget once, not once per replica: a client (claim and decision in one
// pipelined round trip) and an anonymous caller (one decision).
func TestRedisSharedBudget(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedisEnv(t, oneServer(srv), "fail_closed", "fail_closed")
	envs := []*env{a, a.replica()}
	token := a.token(nil)
	for _, tt := range []struct {
		name   string
		budget int
		req    func(e *env) *http.Request
	}{
		{"ok/client", clientBudget, func(e *env) *http.Request { return e.signed("/api/x", token) }},
		{"ok/anonymous", 5, func(e *env) *http.Request { return e.req("GET", "/public/x") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			allowed := 0
			for i := range 2*tt.budget + 2 {
				e := envs[i%2]
				res := e.do(tt.req(e))
				if res.status == 429 {
					break
				}
				if res.status != 200 {
					t.Fatalf("request %d: got %d %s", i, res.status, res.body)
				}
				allowed++
			}
			if allowed != tt.budget {
				t.Fatalf("got %d requests through two replicas, want the budget, %d", allowed, tt.budget)
			}
			// Both replicas now refuse.
			for i, e := range envs {
				if res := e.do(tt.req(e)); res.status != 429 {
					t.Errorf("replica %d after the budget: got %d, want 429", i, res.status)
				}
			}
		})
	}
}

// TestRedisFailureModes: with Redis killed, each failure mode does what
// the config says, no request waits much past redis.timeout, /readyz says
// Redis is down; once Redis is back, the gateway uses it again by itself.
func TestRedisFailureModes(t *testing.T) {
	for _, tt := range []struct {
		name           string
		replay, limits string
		dpop, anon     int  // status of a token request and an anonymous one while Redis is down
		headers        bool // rate-limit headers while Redis is down
	}{
		{"fail_closed+fail_closed", "fail_closed", "fail_closed", 503, 503, false},
		{"fail_open+fail_open", "fail_open", "fail_open", 200, 200, false},
		{"fail_closed+local", "fail_closed", "local", 503, 200, true},
		{"fail_open+local", "fail_open", "local", 200, 200, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			e := newRedisEnv(t, oneServer(srv), tt.replay, tt.limits)
			token := e.token(nil)
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer rc.Close()
			var slowest time.Duration
			do := func(r *http.Request) result {
				t.Helper()
				start := time.Now()
				res := e.do(r)
				slowest = max(slowest, time.Since(start))
				return res
			}
			if res := do(e.signed("/api/x", token)); res.status != 200 {
				t.Fatalf("Redis up: got %d %s, want 200", res.status, res.body)
			}

			srv.Stop()
			r := e.signed("/api/x", token)
			res := do(r)
			if res.status != tt.dpop || (res.status == 503 && res.err.Error != "temporarily_unavailable") {
				t.Errorf("token request, Redis down: got %d %s, want %d", res.status, res.body, tt.dpop)
			}
			if tt.replay == "fail_open" {
				// Accepted unchecked: a replay gets through too, which is
				// what fail_open trades for availability.
				if res := do(e.resend(r)); res.status != 200 {
					t.Errorf("replay, Redis down, fail_open: got %d %s, want 200", res.status, res.body)
				}
			}
			res = do(e.req("GET", "/public/x"))
			if res.status != tt.anon || (res.header.Get("X-RateLimit-Limit") != "") != tt.headers {
				t.Errorf("anonymous, Redis down: got %d with X-RateLimit-Limit %q, want %d, headers %v",
					res.status, res.header.Get("X-RateLimit-Limit"), tt.anon, tt.headers)
			}
			if tt.limits == "local" {
				// This replica's own bucket: the anonymous budget of 5
				// holds while Redis is away.
				allowed := 1
				for ; allowed < 10 && do(e.req("GET", "/public/x")).status == 200; allowed++ {
				}
				if allowed != 5 {
					t.Errorf("anonymous on local buckets: got %d through, want 5", allowed)
				}
			}
			// Counted in /metrics: every failed call, and every request a
			// failure mode decided.
			m := scrape(t, e.gw.AdminHandler())
			counted := func(series string, want bool, atLeast float64) {
				t.Helper()
				got := m[series]
				if want && got < atLeast {
					t.Errorf("%s: got %v, want at least %v", series, got, atLeast)
				}
				if !want && got != 0 {
					t.Errorf("%s: got %v, want 0", series, got)
				}
			}
			counted(`dpopgate_redis_errors_total{op="claim_decision"}`, true, 1)
			counted(`dpopgate_redis_errors_total{op="decision"}`, true, 1)
			counted("dpopgate_replay_fail_open_total{}", tt.replay == "fail_open", 2)
			counted("dpopgate_rate_limit_local_fallback_total{}", tt.limits == "local", 6)
			counted("dpopgate_rate_limit_fail_open_total{}", tt.limits == "fail_open", 2)
			if status, check := readyz(t, e); status != 503 || check == "ok" || check == "" {
				t.Errorf("readyz, Redis down: got %d, redis check %q, want 503 saying why", status, check)
			}

			srv.Restart()
			recovered := func() bool {
				r := e.signed("/api/x", token)
				res := do(r)
				if res.status != 200 || res.header.Get("X-RateLimit-Limit") == "" || !isReplayed(do(e.resend(r))) {
					return false
				}
				// The decision is Redis's again: the client's bucket is there.
				key := "dpopgate:bucket:{api|client|" + e.iss.URL + "|agent-1}"
				return rc.Exists(t.Context(), key).Val() == 1
			}
			deadline := time.Now().Add(10 * time.Second)
			for !recovered() {
				if time.Now().After(deadline) {
					t.Fatalf("not recovered 10s after Redis came back")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if status, check := readyz(t, e); status != 200 || check != "ok" {
				t.Errorf("readyz, Redis back: got %d, redis check %q, want 200, ok", status, check)
			}
			// redis.timeout is 200ms, and a refused connection fails at once.
			if slowest > 2*time.Second {
				t.Errorf("slowest request: %v, want well under 2s", slowest)
			}
			t.Logf("slowest request: %v", slowest)
		})
	}
}

// TestRedisUnresponsive: a Redis that accepts connections but never
// answers (paused: a partition, an overloaded server) costs a request at
// most about redis.timeout, then the failure mode applies; when it answers
// again, so does the gateway.
func TestRedisUnresponsive(t *testing.T) {
	srv := redistest.Start(t)
	// A timeout long enough that the bound below tells one timeout from
	// two (a new connection's dial and handshake each taking a whole one)
	// even on a slow machine.
	const timeout = 500 * time.Millisecond
	e := newRedisEnv(t, oneServer(srv)+"  timeout: 500ms\n", "fail_closed", "local")
	token := e.token(nil)
	if res := e.do(e.signed("/api/x", token)); res.status != 200 {
		t.Fatalf("Redis up: got %d %s, want 200", res.status, res.body)
	}
	srv.Pause()
	var slowest time.Duration
	for i := range 4 {
		start := time.Now()
		dpop := e.do(e.signed("/api/x", token))
		mid := time.Now()
		anon := e.do(e.req("GET", "/public/x"))
		t.Logf("request %d: dpop %v, anonymous %v", i, mid.Sub(start), time.Since(mid))
		slowest = max(slowest, mid.Sub(start), time.Since(mid))
		if dpop.status != 503 || anon.status != 200 {
			t.Errorf("request %d, Redis paused: got %d and %d, want 503 (fail_closed) and 200 (local)", i, dpop.status, anon.status)
		}
	}
	if status, _ := readyz(t, e); status != 503 {
		t.Errorf("readyz, Redis paused: got %d, want 503", status)
	}
	t.Logf("slowest request while paused: %v (redis.timeout %v)", slowest, timeout)
	if slowest > timeout+timeout/2 {
		t.Errorf("slowest request while paused: %v, want about redis.timeout (%v) at most", slowest, timeout)
	}
	srv.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for e.do(e.signed("/api/x", token)).status != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 10s after Redis answered again")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisCluster: both backends on a three-master Redis Cluster, shared
// by two replicas.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	a := newRedisEnv(t, "  mode: cluster\n  addrs: ["+strings.Join(cl.Addrs(), ", ")+"]\n  timeout: 500ms\n", "fail_closed", "fail_closed")
	b := a.replica()
	token := a.token(nil)

	r := a.signed("/api/x", token)
	res := a.do(r)
	if res.status != 200 || res.header.Get("X-RateLimit-Remaining") != "99" {
		t.Fatalf("replica a: got %d %q %s, want 200 with 99 left", res.status, res.header.Get("X-RateLimit-Remaining"), res.body)
	}
	if res := b.do(b.resend(r)); !isReplayed(res) {
		t.Fatalf("replay, replica b: got %d %s, want 401 already used", res.status, res.body)
	}
	// The replay took a token with its claim; this request takes the next.
	if res := b.do(b.signed("/api/x", token)); res.status != 200 || res.header.Get("X-RateLimit-Remaining") != "97" {
		t.Fatalf("replica b: got %d %q, want 200 with 97 left", res.status, res.header.Get("X-RateLimit-Remaining"))
	}
	allowed := 0
	for i := range 12 {
		e := []*env{a, b}[i%2]
		if e.do(e.req("GET", "/public/x")).status == 200 {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("anonymous over two replicas: got %d through, want 5", allowed)
	}
	if status, check := readyz(t, a); status != 200 || check != "ok" {
		t.Fatalf("readyz: got %d, redis check %q, want 200, ok", status, check)
	}
}

// TestRedisSentinel: both backends on a Sentinel-managed primary. A
// failover loses nothing the replica had (a proof claimed before it is
// still refused after it, and the client's bucket is not reset to full),
// and the gateway follows the Sentinel to the new primary by itself.
func TestRedisSentinel(t *testing.T) {
	s := redistest.StartSentinel(t)
	e := newRedisEnv(t, "  mode: sentinel\n  master_name: "+s.MasterName+"\n  addrs: ["+s.Sentinel.Addr()+"]\n  timeout: 500ms\n", "fail_closed", "fail_closed")
	token := e.token(nil)
	r := e.signed("/api/x", token)
	if res := e.do(r); res.status != 200 || res.header.Get("X-RateLimit-Remaining") != "99" {
		t.Fatalf("through the Sentinel: got %d %q %s, want 200 with 99 left", res.status, res.header.Get("X-RateLimit-Remaining"), res.body)
	}
	// WAIT counts its own connection's writes: write a marker after the
	// gateway's, and wait for the replica to have it, and so theirs.
	primary := redis.NewClient(&redis.Options{Addr: s.Primary.Addr()})
	defer primary.Close()
	conn := primary.Conn()
	defer conn.Close()
	if err := conn.Set(t.Context(), "marker", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Wait(t.Context(), 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: got %d, %v, want 1", n, err)
	}

	s.Failover()
	// The old primary gone: what answers now is the new one.
	s.Primary.Stop()
	// Until the gateway hears of the new primary, a request may fail
	// (fail_closed: 503); then it goes through again.
	deadline := time.Now().Add(15 * time.Second)
	failed := 0
	for {
		res := e.do(e.signed("/api/x", token))
		if res.status == 200 {
			if left, _ := strconv.Atoi(res.header.Get("X-RateLimit-Remaining")); left > 98 {
				t.Errorf("after the failover: %d left, want at most 98 (the bucket kept)", left)
			}
			break
		}
		if res.status != 503 || res.err.Error != "temporarily_unavailable" {
			t.Fatalf("during the failover: got %d %s, want 200 or 503 temporarily_unavailable", res.status, res.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still 503 15s after the failover: %s", res.body)
		}
		failed++
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d requests failed during the failover", failed)
	replica := redis.NewClient(&redis.Options{Addr: s.Replica.Addr()})
	defer replica.Close()
	bucket := "dpopgate:bucket:{api|client|" + e.iss.URL + "|agent-1}"
	if n, err := replica.Exists(t.Context(), bucket).Result(); err != nil || n != 1 {
		t.Errorf("the client's bucket on the new primary: got %d, %v, want it there", n, err)
	}
	if res := e.do(e.resend(r)); !isReplayed(res) {
		t.Fatalf("replay of a proof claimed before the failover: got %d %s, want 401 already used", res.status, res.body)
	}
	if status, check := readyz(t, e); status != 200 || check != "ok" {
		t.Fatalf("readyz after the failover: got %d, redis check %q, want 200, ok", status, check)
	}
}

// TestRedisTLS: a rediss:// url to a server that speaks TLS only and asks
// for a client certificate. With redis.tls's CA and client certificate
// both backends work; without the CA (the system's roots do not know it)
// or without the certificate, Redis is unreachable: fail_closed answers
// 503, and /readyz says why.
func TestRedisTLS(t *testing.T) {
	srv, f := redistest.StartTLS(t)
	section := func(tls string) string { return "  url: " + srv.URL() + "\n  tls: {" + tls + "}\n" }
	e := newRedisEnv(t, section("ca_file: "+f.CA+", cert_file: "+f.ClientCert+", key_file: "+f.ClientKey), "fail_closed", "fail_closed")
	wantWorking(t, e, "over TLS")

	// The certificate names localhost too: a server_name it carries is
	// checked instead of the address dialled.
	named := newRedisEnv(t, section("ca_file: "+f.CA+", cert_file: "+f.ClientCert+", key_file: "+f.ClientKey+", server_name: localhost"), "fail_closed", "fail_closed")
	if res := named.do(named.signed("/api/x", named.token(nil))); res.status != 200 {
		t.Fatalf("over TLS with server_name localhost: got %d %s, want 200", res.status, res.body)
	}

	for _, tt := range []struct {
		name, tls string
		why       []string // one of these
	}{
		{"fail/no ca_file", "cert_file: " + f.ClientCert + ", key_file: " + f.ClientKey, []string{"certificate signed by unknown authority"}},
		{"fail/server_name the certificate lacks", "ca_file: " + f.CA + ", cert_file: " + f.ClientCert + ", key_file: " + f.ClientKey + ", server_name: redis.example.com",
			[]string{"certificate is valid for localhost, not redis.example.com"}},
		// In TLS 1.3 the server refuses the missing certificate after the
		// client's handshake is done: its alert can lose the race with the
		// reset of the connection it closes.
		{"fail/no client certificate", "ca_file: " + f.CA, []string{"tls: certificate required", "connection reset by peer"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newRedisEnv(t, section(tt.tls), "fail_closed", "fail_closed")
			if res := e.do(e.signed("/api/x", e.token(nil))); res.status != 503 || res.err.Error != "temporarily_unavailable" {
				t.Errorf("got %d %s, want 503 temporarily_unavailable", res.status, res.body)
			}
			status, check := readyz(t, e)
			if status != 503 || !slices.ContainsFunc(tt.why, func(w string) bool { return strings.Contains(check, w) }) {
				t.Errorf("readyz: got %d, redis check %q, want 503 saying one of %q", status, check, tt.why)
			}
		})
	}
}

// readyz returns the status of e's /readyz and its redis check.
func readyz(t *testing.T, e *env) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var rd readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
		t.Fatalf("readyz body %q: %v", rec.Body, err)
	}
	return rec.Code, rd.Checks["redis"]
}

// countingHook counts the client's round trips: single commands and
// pipelines, with the commands each pipeline carried.
type countingHook struct {
	mu        sync.Mutex
	single    []string
	pipelines [][]string
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.single = append(h.single, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var names []string
		for _, c := range cmds {
			names = append(names, c.Name())
		}
		h.mu.Lock()
		h.pipelines = append(h.pipelines, names)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// begun is how many single commands and pipelines the client has begun
// to send since the last take, a connection's handshake included.
func (h *countingHook) begun() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.single) + len(h.pipelines)
}

func (h *countingHook) take() (single []string, pipelines [][]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	single, pipelines = h.single, h.pipelines
	h.single, h.pipelines = nil, nil
	return single, pipelines
}

// TestRedisOneRoundTrip: a DPoP request costs one round trip to Redis, its
// replay claim and its rate-limit decision pipelined; an anonymous one
// costs one decision; a bad token costs nothing (its budget is local, and
// its 401 takes no look at a bucket).
func TestRedisOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	e := newRedisEnv(t, oneServer(srv), "fail_closed", "fail_closed")
	token := e.token(nil)
	if res := e.do(e.signed("/api/x", token)); res.status != 200 { // loads the script
		t.Fatalf("got %d %s, want 200", res.status, res.body)
	}
	h := &countingHook{}
	e.gw.redis.client.AddHook(h)
	for _, tt := range []struct {
		name      string
		req       *http.Request
		status    int
		single    string
		pipelines string
	}{
		{"ok/dpop", e.signed("/api/x", token), 200, "[]", "[[set evalsha]]"},
		{"ok/anonymous", e.req("GET", "/public/x"), 200, "[evalsha]", "[]"},
		{"fail/bad token", e.req("GET", "/api/x", "Authorization", "DPoP not-a-token", "DPoP", "x"), 401, "[]", "[]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if res := e.do(tt.req); res.status != tt.status {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tt.status)
			}
			single, pipelines := h.take()
			if got := fmt.Sprint(single); got != tt.single {
				t.Errorf("single commands: got %s, want %s", got, tt.single)
			}
			if got := fmt.Sprint(pipelines); got != tt.pipelines {
				t.Errorf("pipelines: got %s, want %s", got, tt.pipelines)
			}
		})
	}
}

// TestRedisReloadOnError: rate_limits.on_error changes with a reload, as
// replay.on_error does.
func TestRedisReloadOnError(t *testing.T) {
	srv := redistest.Start(t)
	e := newRedisEnv(t, oneServer(srv), "fail_closed", "fail_closed")
	srv.Stop()
	for _, tt := range []struct {
		onError string
		status  int
		headers bool
	}{
		{"fail_closed", 503, false},
		{"fail_open", 200, false},
		{"local", 200, true},
		{"fail_closed", 503, false},
	} {
		next := *e.cfg
		next.RateLimits.OnError = tt.onError
		if err := e.gw.Reload(&next); err != nil {
			t.Fatalf("Reload(on_error: %s): %v", tt.onError, err)
		}
		res := e.do(e.req("GET", "/public/x"))
		if res.status != tt.status || (res.header.Get("X-RateLimit-Limit") != "") != tt.headers {
			t.Errorf("on_error %s, Redis down: got %d with X-RateLimit-Limit %q, want %d, headers %v",
				tt.onError, res.status, res.header.Get("X-RateLimit-Limit"), tt.status, tt.headers)
		}
	}
}

// TestRedisBatch: concurrent requests' Redis work shares pipelines, each
// request gets its own outcome, and a request that gave up is left out.
func TestRedisBatch(t *testing.T) {
	srv := redistest.Start(t)
	e := newRedisEnv(t, oneServer(srv), "fail_closed", "fail_closed")
	b := e.gw.redis
	h := &countingHook{}
	b.client.AddHook(h)
	l := ratelimit.Limit{Count: 100, Period: time.Minute, Burst: 100}
	var wg sync.WaitGroup
	results := make([]admission, 64)
	start := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			results[i] = b.claimAllowN(context.Background(), fmt.Sprintf("claim-%d", i%32), time.Minute, "bucket", l, 1)
		}(i)
	}
	close(start)
	wg.Wait()
	claimed, replayed, remaining := 0, 0, map[int]bool{}
	for _, a := range results {
		if accepted(t, a.claimErr) {
			claimed++
		} else {
			replayed++
		}
		if a.limitErr != nil || !a.decision.Allowed {
			t.Fatalf("decision: %+v %v", a.decision, a.limitErr)
		}
		remaining[a.decision.Remaining] = true
	}
	if claimed != 32 || replayed != 32 || len(remaining) != 64 {
		t.Fatalf("got %d claimed, %d replayed, %d distinct remainders; want 32, 32, 64", claimed, replayed, len(remaining))
	}
	_, pipelines := h.take()
	if len(pipelines) >= 64 {
		t.Fatalf("64 concurrent operations went in %d pipelines, want fewer", len(pipelines))
	}
	// A request that gave up before its turn claims nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a := b.claimAllowN(ctx, "never", time.Minute, "bucket", l, 1); a.claimErr == nil {
		t.Fatalf("a cancelled request got a claim through")
	}
	if err := b.Claim(context.Background(), "never", time.Minute); err != nil {
		t.Fatalf("the cancelled request's key was claimed: %v", err)
	}
}

// TestRedisSentinelAuth: Sentinels that ask for a password of their own
// (requirepass, as Helm charts set by default) in front of servers that
// ask for theirs: with redis.sentinel_password and redis.password the
// gateway works; without the Sentinels' password it cannot find the
// primary, and says so.
func TestRedisSentinelAuth(t *testing.T) {
	s := redistest.StartSentinelAuth(t, "data-pw", "sentinel-pw")
	section := "  mode: sentinel\n  master_name: " + s.MasterName + "\n  addrs: [" + s.Sentinel.Addr() + "]\n  timeout: 500ms\n  password: data-pw\n"
	t.Run("with", func(t *testing.T) {
		e := newRedisEnv(t, section+"  sentinel_password: sentinel-pw\n", "fail_closed", "fail_closed")
		wantWorking(t, e, "with the Sentinels' password")
	})
	t.Run("without", func(t *testing.T) {
		e := newRedisEnv(t, section, "fail_closed", "fail_closed")
		if res := e.do(e.signed("/api/x", e.token(nil))); res.status != 503 {
			t.Fatalf("got %d %s, want 503: the Sentinel refuses an unauthenticated client", res.status, res.body)
		}
		status, check := readyz(t, e)
		if status != 503 || !strings.Contains(check, "NOAUTH") {
			t.Fatalf("readyz: got %d, redis check %q, want 503 saying NOAUTH", status, check)
		}
		if strings.Contains(check, "pw") {
			t.Fatalf("readyz shows a password: %q", check)
		}
	})
}

// wantWorking checks that e, new, works on its Redis (where says how it
// reaches it): a DPoP request goes through with 99 of the client's 100
// left, its proof sent again is refused, and /readyz is ok.
func wantWorking(t *testing.T, e *env, where string) {
	t.Helper()
	r := e.signed("/api/x", e.token(nil))
	if res := e.do(r); res.status != 200 || res.header.Get("X-RateLimit-Remaining") != "99" {
		t.Fatalf("%s: got %d %q %s, want 200 with 99 left", where, res.status, res.header.Get("X-RateLimit-Remaining"), res.body)
	}
	if res := e.do(e.resend(r)); !isReplayed(res) {
		t.Fatalf("replay %s: got %d %s, want 401 already used", where, res.status, res.body)
	}
	if status, check := readyz(t, e); status != 200 || check != "ok" {
		t.Fatalf("readyz %s: got %d, redis check %q, want 200, ok", where, status, check)
	}
}
