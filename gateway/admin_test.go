package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics from the admin handler into "name{k="v",...}" ->
// value (histograms by their _count).
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: got %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			sort.Strings(labels)
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

// TestMetrics drives a scripted sequence of requests and checks the
// series /metrics reports for it.
func TestMetrics(t *testing.T) {
	e := newEnv(t, "")
	admin := e.gw.AdminHandler()
	tok := e.token(nil)
	for i := 0; i < 6; i++ { // 5 pass, the 6th is over the anonymous budget
		e.do(e.req("GET", "/public/x"))
	}
	e.do(e.req("GET", "/tools/x")) // no token
	r := e.dpop(e.req("GET", "/tools/x"), tok)
	e.do(r)                                                                                                      // 200
	e.do(e.req("GET", "/tools/x", "Authorization", r.Header.Get("Authorization"), "DPoP", r.Header.Get("DPoP"))) // replay
	bad := e.dpop(e.req("GET", "/tools/other"), tok)
	bad.URL.Path = "/tools/x"
	e.do(bad)                      // htu mismatch
	e.do(e.req("GET", "/nowhere")) // 404
	e.do(e.req("GET", "/dead/x"))  // 502

	got := scrape(t, admin)
	want := map[string]float64{
		`dpopgate_requests_total{class="2xx",route="public",tier="anonymous"}`:          5,
		`dpopgate_requests_total{class="4xx",route="public",tier="anonymous"}`:          1,
		`dpopgate_requests_total{class="2xx",route="tools",tier="client"}`:              1,
		`dpopgate_requests_total{class="4xx",route="tools",tier="none"}`:                2,
		`dpopgate_requests_total{class="4xx",route="tools",tier="client"}`:              1, // the replay: its rate was taken first
		`dpopgate_requests_total{class="4xx",route="none",tier="none"}`:                 1,
		`dpopgate_requests_total{class="5xx",route="dead",tier="anonymous"}`:            1,
		`dpopgate_auth_failures_total{code="invalid_token",reason="missing_token"}`:     1,
		`dpopgate_auth_failures_total{code="invalid_dpop_proof",reason="replayed"}`:     1,
		`dpopgate_auth_failures_total{code="invalid_dpop_proof",reason="htu_mismatch"}`: 1,
		`dpopgate_dpop_replays_total{}`:                                                 1,
		`dpopgate_rate_limited_total{tier="anonymous"}`:                                 1,
		`dpopgate_jwks_fetches_total{issuer="` + e.iss.URL + `",result="ok"}`:           1,
		`dpopgate_jwks_loaded{issuer="` + e.iss.URL + `"}`:                              1,
		`dpopgate_request_duration_seconds{part="total",route="public"}`:                6,
		`dpopgate_request_duration_seconds{part="upstream",route="tools"}`:              1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("got %s = %v, want %v", k, got[k], v)
		}
	}
	// Label values come from config and fixed sets only: the path, the
	// client id and the token never appear.
	for k := range got {
		if strings.Contains(k, "/tools") || strings.Contains(k, "agent-1") || strings.Contains(k, "nowhere") {
			t.Errorf("a label carries request data: %s", k)
		}
	}
}

func TestUsage(t *testing.T) {
	e := newEnv(t, "")
	a := e.token(nil)
	b := e.iss.BoundToken(t, e.key, "agent-2", "listings:read", nil)
	for i := 0; i < 3; i++ {
		e.do(e.dpop(e.req("GET", "/tools/x"), a))
	}
	e.do(e.dpop(e.req("GET", "/tools/x"), b)) // 403: a rejection of agent-2
	e.do(e.dpop(e.req("GET", "/public/x"), b))
	e.do(e.req("GET", "/public/x")) // anonymous
	rec := httptest.NewRecorder()
	e.gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/usage?top=2", nil))
	var u struct {
		Clients []usageRow `json:"clients"`
	}
	json.Unmarshal(rec.Body.Bytes(), &u)
	if len(u.Clients) != 2 || u.Clients[0].ClientID != "agent-1" || u.Clients[0].Requests != 3 ||
		u.Clients[1].ClientID != "agent-2" || u.Clients[1].Requests != 2 || u.Clients[1].Rejections != 1 {
		t.Fatalf("got %s", rec.Body.String())
	}
}

// TestAccessLog: one JSON line per request with the fields an operator
// needs to find out why an agent gets 401s, and never a credential.
func TestAccessLog(t *testing.T) {
	e := newEnv(t, "")
	tok := e.token(nil)
	r := e.dpop(e.req("GET", "/tools/x?secret=query"), tok)
	proof := r.Header.Get("DPoP")
	e.do(r)
	e.do(e.req("GET", "/tools/x", "Authorization", "DPoP "+tok, "DPoP", proof)) // replay
	lines := strings.Split(strings.TrimSpace(e.logs.String()), "\n")
	var entries []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if m["msg"] == "request" {
			entries = append(entries, m)
		}
	}
	if len(entries) != 2 {
		t.Fatalf("got %d request lines, want 2:\n%s", len(entries), e.logs.String())
	}
	ok, replay := entries[0], entries[1]
	for k, v := range map[string]any{"route": "tools", "method": "GET", "path": "/tools/x", "status": 200.0,
		"tier": "client", "client_id": "agent-1", "subject": "user-of-agent-1", "jkt": e.key.Thumbprint(), "client_ip": "127.0.0.1"} {
		if ok[k] != v {
			t.Errorf("ok line: got %s = %v, want %v", k, ok[k], v)
		}
	}
	for _, k := range []string{"time", "request_id", "bytes", "latency_ms", "upstream_ms"} {
		if _, present := ok[k]; !present {
			t.Errorf("ok line: no %s", k)
		}
	}
	if replay["status"] != 401.0 || replay["reason"] != "replayed" || replay["client_id"] != "agent-1" {
		t.Errorf("replay line: got %v", replay)
	}
	all := e.logs.String()
	for _, secret := range []string{tok[len(tok)-20:], proof[len(proof)-20:], "secret=query"} {
		if strings.Contains(all, secret) {
			t.Fatalf("the log holds a credential or the query: %q", secret)
		}
	}
}
