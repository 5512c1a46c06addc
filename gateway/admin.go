package gateway

import (
	"encoding/json"
	"net/http"
	"time"
)

// AdminHandler serves the admin listener: /healthz (the process is up),
// /readyz (every issuer's keys are loaded, Redis answers PING within
// redis.timeout when configured, not draining), /metrics (Prometheus) and
// /usage (top clients over the last ten minutes).
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", g.serveReady)
	mux.Handle("GET /metrics", g.metrics.handler())
	mux.HandleFunc("GET /usage", g.serveUsage)
	return mux
}

type readiness struct {
	Ready   bool              `json:"ready"`
	Checks  map[string]string `json:"checks"`
	Checked time.Time         `json:"checked"`
}

// serveReady answers 200 when the gateway can serve tokens, 503 otherwise,
// with one line per check.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	rd := readiness{Ready: true, Checks: map[string]string{}, Checked: g.clock().UTC()}
	if g.draining.Load() {
		rd.Ready = false
		rd.Checks["gateway"] = "draining"
	}
	for _, st := range g.snap.Load().verifier.Issuers() {
		if st.Loaded {
			rd.Checks["issuer "+st.Issuer] = "keys loaded " + st.FetchedAt.UTC().Format(time.RFC3339)
		} else {
			rd.Checks["issuer "+st.Issuer] = "no keys yet"
			rd.Ready = false
		}
	}
	if g.redis != nil {
		if err := g.redis.ping(r.Context()); err != nil {
			rd.Ready = false
			rd.Checks["redis"] = "no answer to PING: " + err.Error()
		} else {
			rd.Checks["redis"] = "ok"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(rd)
}

// Drain marks the gateway as shutting down: /readyz answers 503 from now
// on, so load balancers stop sending new requests while in-flight ones
// finish.
func (g *Gateway) Drain() { g.draining.Store(true) }
