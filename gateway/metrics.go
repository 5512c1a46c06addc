package gateway

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus series, on a registry of its own
// (so tests can run several gateways). Every label value comes from config
// (route, tier and issuer names) or from a fixed set (status classes,
// error codes, reasons, results), never from the request.
type metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec   // route, class, tier
	duration       *prometheus.HistogramVec // route, part (total | gateway | upstream)
	authFailures   *prometheus.CounterVec   // code, reason
	replays        prometheus.Counter
	replayFailOpen prometheus.Counter
	rateLimited    *prometheus.CounterVec   // tier
	jwksFetches    *prometheus.CounterVec   // issuer, result
	introspections *prometheus.CounterVec   // issuer, result
	redisErrors    *prometheus.CounterVec   // op
	redisLatency   *prometheus.HistogramVec // op
	// The series of each redisCall, looked up once (observeRedis).
	redisOnce      sync.Once
	redisErrorsOf  [redisCalls]prometheus.Counter
	redisLatencyOf [redisCalls]prometheus.Observer
	redisBatch     prometheus.Histogram // operations per pipeline
	limiterLocal   prometheus.Counter
	// limiterFailOpen counts requests let through undecided (on_error: fail_open).
	limiterFailOpen prometheus.Counter
}

// latencyBuckets span a cached-token request (~0.1 ms) to a slow upstream.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpopgate_requests_total", Help: "Requests answered, by route, status class and tier.",
	}, []string{"route", "class", "tier"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dpopgate_request_duration_seconds", Help: "Request latency by route: total, spent in the gateway, spent waiting for the upstream's headers.",
		Buckets: latencyBuckets,
	}, []string{"route", "part"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpopgate_auth_failures_total", Help: "Refused credentials, by error code and the check that failed.",
	}, []string{"code", "reason"})
	m.replays = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dpopgate_dpop_replays_total", Help: "DPoP proofs refused because they had been used before.",
	})
	m.replayFailOpen = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dpopgate_replay_fail_open_total", Help: "Proofs accepted unchecked because the replay store failed (on_error: fail_open).",
	})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpopgate_rate_limited_total", Help: "Requests refused with 429, by tier (auth_failures: the per-IP failed-authentication budget).",
	}, []string{"tier"})
	m.jwksFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpopgate_jwks_fetches_total", Help: "JWKS fetches by issuer and result (ok, error).",
	}, []string{"issuer", "result"})
	m.introspections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpopgate_introspections_total", Help: "Introspection calls by issuer and result (ok, error).",
	}, []string{"issuer", "result"})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpopgate_redis_errors_total", Help: "Redis calls that failed, by operation.",
	}, []string{"op"})
	m.redisLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dpopgate_redis_duration_seconds", Help: "Redis round trips, by operation.", Buckets: latencyBuckets,
	}, []string{"op"})
	m.redisBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "dpopgate_redis_batch_size", Help: "Requests' Redis operations sent together in one pipeline.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	m.limiterLocal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dpopgate_rate_limit_local_fallback_total", Help: "Rate-limit decisions taken locally because Redis failed (on_error: local).",
	})
	m.limiterFailOpen = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dpopgate_rate_limit_fail_open_total", Help: "Requests let through without a rate-limit decision because Redis failed (on_error: fail_open).",
	})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.authFailures, m.replays, m.replayFailOpen,
		m.rateLimited, m.jwksFetches, m.introspections, m.redisErrors, m.redisLatency, m.redisBatch, m.limiterLocal, m.limiterFailOpen,
		keyCollector{g}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// observeFetch counts a JWKS fetch (auth.Options.OnFetch).
func (m *metrics) observeFetch(issuer string, err error) {
	m.jwksFetches.WithLabelValues(issuer, resultLabel(err)).Inc()
}

// observeIntrospection counts an introspection call.
func (m *metrics) observeIntrospection(issuer string, err error) {
	m.introspections.WithLabelValues(issuer, resultLabel(err)).Inc()
}

// observeRedis records one Redis round trip. It is on every request's
// path: the series are looked up once, at the first round trip (which
// makes every op's series, at zero), rather than hashed and found under a
// lock each time: on the README's VM, that took about a quarter of what
// the gateway adds to the limiter's own call (BenchmarkRedisRoundTrip's
// decision and decision-limiter-alone), 0.008 of a bare round trip.
func (m *metrics) observeRedis(c redisCall, d time.Duration, err error) {
	m.redisOnce.Do(func() {
		for k, op := range redisCallLabels {
			m.redisErrorsOf[k] = m.redisErrors.WithLabelValues(op)
			m.redisLatencyOf[k] = m.redisLatency.WithLabelValues(op)
		}
	})
	m.redisLatencyOf[c].Observe(d.Seconds())
	if err != nil {
		m.redisErrorsOf[c].Inc()
	}
}

func resultLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// statusClass is the label of a status: "2xx" ... "5xx".
func statusClass(code int) string {
	switch {
	case code < 200:
		return "1xx"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	default:
		return "5xx"
	}
}

// observe records one finished request.
func (m *metrics) observe(x *exchange, status int, total time.Duration) {
	route, tier := "none", x.tier
	if x.route != nil {
		route = x.route.name
	}
	if tier == "" {
		tier = "none"
	}
	m.requests.WithLabelValues(route, statusClass(status), tier).Inc()
	m.duration.WithLabelValues(route, "total").Observe(total.Seconds())
	m.duration.WithLabelValues(route, "gateway").Observe((total - x.upstream).Seconds())
	if !x.upstreamStart.IsZero() {
		m.duration.WithLabelValues(route, "upstream").Observe(x.upstream.Seconds())
	}
}

// keyCollector reports each issuer's key state at scrape time: whether keys
// are loaded, and how old they are.
type keyCollector struct{ g *Gateway }

var (
	keysLoadedDesc = prometheus.NewDesc("dpopgate_jwks_loaded", "1 when the issuer's signing keys are in memory.", []string{"issuer"}, nil)
	keyAgeDesc     = prometheus.NewDesc("dpopgate_jwks_age_seconds", "Seconds since the issuer's keys were fetched.", []string{"issuer"}, nil)
)

func (c keyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- keysLoadedDesc
	ch <- keyAgeDesc
}

func (c keyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.snap.Load()
	if s == nil {
		return
	}
	now := c.g.clock()
	for _, st := range s.verifier.Issuers() {
		loaded := 0.0
		if st.Loaded {
			loaded = 1
			ch <- prometheus.MustNewConstMetric(keyAgeDesc, prometheus.GaugeValue, now.Sub(st.FetchedAt).Seconds(), st.Issuer)
		}
		ch <- prometheus.MustNewConstMetric(keysLoadedDesc, prometheus.GaugeValue, loaded, st.Issuer)
	}
}

// observeFetch counts a JWKS fetch and logs a failed one: the keys we have
// keep serving, and the refresh is retried with backoff.
func (g *Gateway) observeFetch(issuer string, err error) {
	g.metrics.observeFetch(issuer, err)
	if err != nil {
		g.log.Warn("JWKS fetch failed; keys already loaded, if any, keep serving; retrying with backoff", "issuer", issuer, "error", err.Error())
	}
}

// countRefusal counts a refused request by what refused it.
func (g *Gateway) countRefusal(x *exchange, a *answer) {
	switch a.status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		g.metrics.authFailures.WithLabelValues(a.code, a.reason).Inc()
		if a.reason == "replayed" {
			g.metrics.replays.Inc()
		}
	case http.StatusTooManyRequests:
		tier := x.tier
		if a.reason == "auth_failures" {
			tier = "auth_failures"
		}
		g.metrics.rateLimited.WithLabelValues(tier).Inc()
	case http.StatusServiceUnavailable:
		g.metrics.authFailures.WithLabelValues(a.code, a.reason).Inc()
	}
}

// record accounts one finished request in the metrics and the usage table.
func (g *Gateway) record(w *responseWriter, x *exchange) {
	now := g.clock()
	status := w.status()
	g.metrics.observe(x, status, now.Sub(x.start))
	rejected := status >= 400
	switch {
	case x.principal != nil:
		g.usage.record(now, x.principal.Issuer, x.principal.ClientID, rejected)
	case x.route != nil:
		g.usage.record(now, "", "anonymous", rejected)
	}
}
