package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/devauth"
	"github.com/dpopgate/dpopgate/gateway/dpopclient"
)

// The load tool. It starts, on loopback, an upstream, a bare
// httputil.ReverseProxy in front of it (the baseline), and dpopgate with a
// development authorization server; then it drives each scenario for the
// same time with pre-signed, unique, fresh DPoP proofs, so the client's
// signing is not what is measured, and prints each scenario's throughput
// and latency with its ratio to the bare proxy's, all from one run.

type benchOpts struct {
	scenarios   []string
	duration    time.Duration
	rounds      int
	warmup      time.Duration
	connections int
	rate        string // "", "N" or "Fx" (a fraction of bare's closed-loop rate)
	redisURL    string
	bareGOGC    string
	cpuprofile  string
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	var o benchOpts
	scenarios := fs.String("scenarios", "bare,anonymous,bearer,dpop,dpop-redis", "scenarios to run, comma-separated (bare is always run first)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per scenario and round")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each row is the median of its scenario's rounds")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before each scenario")
	fs.IntVar(&o.connections, "connections", 32, "concurrent connections (closed loop)")
	fs.StringVar(&o.rate, "rate", "", "open loop at a fixed rate: N req/s, or Fx for a fraction F of bare's closed-loop rate (e.g. 0.5x)")
	fs.StringVar(&o.redisURL, "redis", "", "Redis for dpop-redis (default: start redis-server from PATH)")
	fs.StringVar(&o.bareGOGC, "bare-gogc", "100", "GOGC of the bare proxy's process (100: Go's default, as a plain proxy runs)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.scenarios = strings.Split(*scenarios, ",")
	if !slices.Contains(o.scenarios, "bare") {
		o.scenarios = append([]string{"bare"}, o.scenarios...)
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rig, err := startRig(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer rig.close()

	fmt.Fprintf(stdout, "dpopgate bench: %s, %d CPUs, gateway GOGC=%s, bare proxy GOGC=%s, %d connections, %d rounds of %s per scenario (+%s warm-up)",
		runtime.Version(), runtime.NumCPU(), gogc(), o.bareGOGC, o.connections, o.rounds, o.duration, o.warmup)
	if o.rate != "" {
		fmt.Fprintf(stdout, ", open loop at %s", o.rate)
	}
	fmt.Fprintln(stdout)
	// Rounds interleave the scenarios, so a noisy neighbour spreads over
	// all of them; each row is the median of its rounds.
	byName := map[string][]benchResult{}
	var order []string
	for round := 0; round < o.rounds; round++ {
		var bare *benchResult
		for _, name := range o.scenarios {
			sc, err := rig.scenario(name)
			if err != nil {
				if round == 0 {
					fmt.Fprintf(stderr, "%s: skipped: %v\n", name, err)
				}
				continue
			}
			rate := 0.0
			if o.rate != "" && !(name == "bare" && strings.HasSuffix(o.rate, "x")) {
				if rate, err = parseRate(o.rate, bare); err != nil {
					return err
				}
			}
			r, err := rig.run(ctx, sc, rate)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if name == "bare" {
				closed := r
				bare = &closed
				if strings.HasSuffix(o.rate, "x") {
					// bare's closed-loop maximum was the reference; now
					// bare itself at the asked fraction of it.
					record(byName, &order, r)
					fr, _ := parseRate(o.rate, bare)
					if r, err = rig.run(ctx, sc, fr); err != nil {
						return err
					}
					r.name = "bare@" + o.rate
				}
			}
			record(byName, &order, r)
		}
	}
	var results []benchResult
	for _, name := range order {
		results = append(results, median(byName[name]))
	}
	printResults(stdout, results)
	return nil
}

func record(m map[string][]benchResult, order *[]string, r benchResult) {
	if _, ok := m[r.name]; !ok {
		*order = append(*order, r.name)
	}
	m[r.name] = append(m[r.name], r)
}

// median merges the rounds of a scenario: the median req/s, every
// latency, every answer.
func median(rs []benchResult) benchResult {
	out := benchResult{name: rs[0].name, statuses: map[int]int{}}
	var rates []float64
	for _, r := range rs {
		rates = append(rates, r.rps)
		out.latencies = append(out.latencies, r.latencies...)
		for k, v := range r.statuses {
			out.statuses[k] += v
		}
		out.errors += r.errors
	}
	slices.Sort(rates)
	out.rps = rates[len(rates)/2]
	slices.Sort(out.latencies)
	return out
}

func gogc() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	return strconv.Itoa(defaultGOGC)
}

func parseRate(s string, bare *benchResult) (float64, error) {
	if f, ok := strings.CutSuffix(s, "x"); ok {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || bare == nil {
			return 0, fmt.Errorf("--rate %q: want N or Fx", s)
		}
		return v * bare.rps, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("--rate %q: want N or Fx", s)
	}
	return v, nil
}

// rig is everything a bench run talks to.
type rig struct {
	o        benchOpts
	upstream *http.Server
	servers  []*http.Server
	bareURL  string
	gwURL    string
	redisGW  string // "" when no Redis
	key      *dpopclient.Key
	dpopTok  string
	bearer   string
	stop     []func()
	client   *http.Client
}

func (r *rig) close() {
	for i := len(r.stop) - 1; i >= 0; i-- {
		r.stop[i]()
	}
}

// serveOn starts h on a loopback listener and returns its URL.
func (r *rig) serveOn(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	r.stop = append(r.stop, func() { srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

const benchConfig = `
server: {listen: %[7]s, admin_listen: "off"}
issuers:
  - issuer: %[1]s
    audiences: [%[2]s]
    algorithms: [ES256]
rate_limits:
  backend: %[4]s
  tiers:
    anonymous: {rate: 1000000000/m}
    client: {rate: 1000000000/m}
  auth_failures: {rate: 1000000000/m}
replay: {backend: %[3]s}
%[5]s
routes:
  - name: anonymous
    path_prefix: /anonymous
    upstream: %[6]s
    auth: optional
  - name: bearer
    path_prefix: /bearer
    upstream: %[6]s
    auth: required
    dpop: optional
  - name: dpop
    path_prefix: /dpop
    upstream: %[6]s
    auth: required
`

func startRig(ctx context.Context, o benchOpts, stderr io.Writer) (*rig, error) {
	r := &rig{o: o}
	body := []byte(`{"ok":true,"upstream":"bench"}`)
	up, err := r.serveOn(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	if err != nil {
		return nil, err
	}
	// The bare proxy and the gateways each run in a process of their own,
	// as they would in production: their own GC, their own heap.
	bareAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r.bareURL = "http://" + bareAddr
	if err := r.child([]string{"GOGC=" + o.bareGOGC}, bareAddr, "bench-bare", "--listen", bareAddr, "--upstream", up); err != nil {
		return nil, err
	}
	gwAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r.gwURL = "http://" + gwAddr // the tokens' audience
	asLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	issuer := "http://" + asLn.Addr().String()
	as, err := devauth.New(devauth.Options{Issuer: issuer, Audience: r.gwURL, TokenTTL: time.Hour, Clients: []devauth.Client{
		{ID: "bench", Secret: "bench-secret", Scope: "tools:call"},
		{ID: "bench-bearer", Secret: "bench-secret", Scope: "tools:call", Bearer: true},
	}})
	if err != nil {
		return nil, err
	}
	asSrv := &http.Server{Handler: as, ReadHeaderTimeout: 10 * time.Second}
	go asSrv.Serve(asLn)
	r.stop = append(r.stop, func() { asSrv.Close() })

	if err := r.startGateway(gwAddr, issuer, up, "memory", "local", ""); err != nil {
		return nil, err
	}
	if slices.Contains(o.scenarios, "dpop-redis") {
		if rurl, err := r.redis(o.redisURL); err != nil {
			fmt.Fprintf(stderr, "dpop-redis: no Redis (%v)\n", err)
		} else {
			addr, err := freeAddr()
			if err != nil {
				return nil, err
			}
			r.redisGW = "http://" + addr
			if err := r.startGateway(addr, issuer, up, "redis", "redis", "redis: {url: \""+rurl+"\"}"); err != nil {
				return nil, err
			}
		}
	}

	r.client = &http.Client{Transport: &http.Transport{
		MaxIdleConns: 4 * o.connections, MaxIdleConnsPerHost: 4 * o.connections, IdleConnTimeout: time.Minute,
		DisableCompression: true,
	}, Timeout: 30 * time.Second}
	if r.key, err = dpopclient.GenerateKey("ES256"); err != nil {
		return nil, err
	}
	if r.dpopTok, err = fetchToken(ctx, issuer, "bench", r.key); err != nil {
		return nil, err
	}
	if r.bearer, err = fetchToken(ctx, issuer, "bench-bearer", r.key); err != nil {
		return nil, err
	}
	return r, nil
}

// freeAddr picks a loopback address nobody listens on (for a child to
// take: the window between closing and the child's listen is harmless
// on a bench machine).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startGateway runs `dpopgate serve` on addr with the bench config: its
// default GC setting, its JSON access log (to /dev/null), as deployed.
// Every token names the first gateway as audience, so both gateways take
// the same tokens.
func (r *rig) startGateway(addr, issuer, upstream, replayBackend, limitBackend, redisBlock string) error {
	text := fmt.Sprintf(benchConfig, issuer, r.gwURL, replayBackend, limitBackend, redisBlock, upstream, addr)
	if _, err := config.Parse("bench (built in)", []byte(text), nil); err != nil {
		return err
	}
	f, err := os.CreateTemp("", "dpopgate-bench-*.yaml")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		return err
	}
	r.stop = append(r.stop, func() { os.Remove(f.Name()) })
	return r.child(nil, addr, "serve", "--config", f.Name())
}

// child starts this program again with args and extra environment, stops
// it when the rig closes, and waits until it accepts connections on addr.
func (r *rig) child(env []string, addr string, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return err
	}
	r.stop = append(r.stop, func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	for i := 0; i < 250; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not start listening on %s", args[0], addr)
}

// benchBare is the baseline: a plain httputil.ReverseProxy with a tuned
// Transport (the default one keeps 2 idle connections per host).
func benchBare(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("bench-bare", stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	upstream := fs.String("upstream", "", "upstream URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*upstream)
	if err != nil {
		return err
	}
	bare := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: bare, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// redis returns a Redis URL: the given one, or a redis-server started here.
func (r *rig) redis(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server not on PATH; pass --redis URL")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "dpopgate-bench-redis")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	r.stop = append(r.stop, func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "redis://" + addr, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", errors.New("redis-server did not start")
}

// fetchToken gets a token from the dev authorization server.
func fetchToken(ctx context.Context, issuer, client string, key *dpopclient.Key) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, "bench-secret")
	resp, err := (&http.Client{Transport: &dpopclient.Transport{Key: key}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tok := jsonField(b, "access_token")
	if tok == "" {
		return "", fmt.Errorf("no token for %s: %s", client, b)
	}
	return tok, nil
}

// scenario is one row of the table: a URL and the headers of each request.
type scenario struct {
	name    string
	url     string
	headers func(n int) [][2]string // n requests' Authorization and DPoP values
}

func (r *rig) scenario(name string) (scenario, error) {
	same := func(authz string) func(n int) [][2]string {
		return func(n int) [][2]string {
			h := make([][2]string, n)
			for i := range h {
				h[i] = [2]string{authz, ""}
			}
			return h
		}
	}
	dpop := func(base string) func(n int) [][2]string {
		return func(n int) [][2]string { return r.proofs(base+"/dpop/tool", n) }
	}
	switch name {
	case "bare":
		return scenario{name, r.bareURL + "/anonymous/tool", same("")}, nil
	case "anonymous":
		return scenario{name, r.gwURL + "/anonymous/tool", same("")}, nil
	case "bearer":
		return scenario{name, r.gwURL + "/bearer/tool", same("Bearer " + r.bearer)}, nil
	case "dpop":
		return scenario{name, r.gwURL + "/dpop/tool", dpop(r.gwURL)}, nil
	case "dpop-redis":
		if r.redisGW == "" {
			return scenario{}, errors.New("no Redis")
		}
		return scenario{name, r.redisGW + "/dpop/tool", dpop(r.redisGW)}, nil
	}
	return scenario{}, fmt.Errorf("unknown scenario %q", name)
}

// proofs signs n unique proofs for GET url, on every core, before the run.
func (r *rig) proofs(url string, n int) [][2]string {
	out := make([][2]string, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				p, err := r.key.Proof("GET", url, r.dpopTok, "", time.Now())
				if err != nil {
					panic(err) // a key that signed once signs again
				}
				out[i] = [2]string{"DPoP " + r.dpopTok, p}
			}
		}(w)
	}
	wg.Wait()
	return out
}

type benchResult struct {
	name      string
	rps       float64
	latencies []time.Duration
	statuses  map[int]int
	errors    int
	exhausted bool
}

// run drives one scenario: closed loop with the configured connections
// when rate is 0, else open loop at rate (latency counted from the time
// each request was due, so a stalled gateway cannot hide its queue).
func (r *rig) run(ctx context.Context, sc scenario, rate float64) (benchResult, error) {
	// How many requests could this take at most? Sized from a short probe
	// at full speed, generously.
	total := r.o.warmup + r.o.duration
	n := int(rate*total.Seconds()*1.1) + 1000
	if rate == 0 {
		n = 60_000 * int(total.Seconds()+1)
		if sc.name == "dpop" || sc.name == "dpop-redis" {
			n = 25_000 * int(total.Seconds()+1) // signing them all takes a while
		}
	}
	hdrs := sc.headers(n)
	var next atomic.Int64
	res := benchResult{name: sc.name, statuses: map[int]int{}}
	var mu sync.Mutex
	start := time.Now()
	measureFrom := start.Add(r.o.warmup)
	end := measureFrom.Add(r.o.duration)
	var measured atomic.Int64
	worker := func(due <-chan time.Time) {
		lat := make([]time.Duration, 0, 4096)
		statuses := map[int]int{}
		errs := 0
		for {
			var sched time.Time
			if due != nil {
				t, ok := <-due
				if !ok {
					break
				}
				sched = t
			}
			i := next.Add(1) - 1
			if i >= int64(len(hdrs)) {
				mu.Lock()
				res.exhausted = true
				mu.Unlock()
				break
			}
			now := time.Now()
			if due == nil {
				if now.After(end) {
					break
				}
				sched = now
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sc.url, nil)
			if h := hdrs[i]; h[0] != "" {
				req.Header["Authorization"] = []string{h[0]}
				if h[1] != "" {
					req.Header["Dpop"] = []string{h[1]}
				}
			}
			resp, err := r.client.Do(req)
			done := time.Now()
			code := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			if sched.Before(measureFrom) || done.After(end.Add(time.Second)) {
				continue
			}
			if err != nil {
				errs++
				continue
			}
			measured.Add(1)
			statuses[code]++
			lat = append(lat, done.Sub(sched))
		}
		mu.Lock()
		res.latencies = append(res.latencies, lat...)
		for k, v := range statuses {
			res.statuses[k] += v
		}
		res.errors += errs
		mu.Unlock()
	}
	var wg sync.WaitGroup
	if rate == 0 {
		for c := 0; c < r.o.connections; c++ {
			wg.Add(1)
			go func() { defer wg.Done(); worker(nil) }()
		}
	} else {
		due := make(chan time.Time, 100_000)
		for c := 0; c < 512; c++ {
			wg.Add(1)
			go func() { defer wg.Done(); worker(due) }()
		}
		// Release every request that is due, then sleep a little: timers
		// are coarse, and a due time, not a send time, starts each
		// latency, so the dispatcher's own lag is counted too.
		interval := time.Duration(float64(time.Second) / rate)
		for k := 0; ; {
			now := time.Now()
			for ; ; k++ {
				t := start.Add(time.Duration(k) * interval)
				if t.After(now) || t.After(end) {
					break
				}
				due <- t
			}
			if now.After(end) {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		close(due)
	}
	wg.Wait()
	res.rps = float64(measured.Load()) / r.o.duration.Seconds()
	if res.exhausted && rate == 0 {
		return res, fmt.Errorf("ran out of pre-signed requests (%d); shorten --duration", n)
	}
	slices.Sort(res.latencies)
	return res, nil
}

func percentile(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l)-1) * p)
	return l[i]
}

func printResults(w io.Writer, results []benchResult) {
	var bare float64
	for _, r := range results {
		if r.name == "bare" {
			bare = r.rps
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treq/s\tvs bare\tp50\tp90\tp99\tp99.9\tanswers\t")
	for _, r := range results {
		var answers []string
		for _, code := range slices.Sorted(maps.Keys(r.statuses)) {
			answers = append(answers, fmt.Sprintf("%d:%d", code, r.statuses[code]))
		}
		if r.errors > 0 {
			answers = append(answers, fmt.Sprintf("errors:%d", r.errors))
		}
		ratio := "-"
		if bare > 0 {
			ratio = fmt.Sprintf("%.2fx", r.rps/bare)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.rps, ratio,
			ms(percentile(r.latencies, .50)), ms(percentile(r.latencies, .90)),
			ms(percentile(r.latencies, .99)), ms(percentile(r.latencies, .999)), strings.Join(answers, " "))
	}
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// jsonField reads one string member of a JSON object.
func jsonField(b []byte, name string) string {
	var m map[string]any
	json.Unmarshal(b, &m)
	s, _ := m[name].(string)
	return s
}
