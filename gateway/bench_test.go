package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay"
)

// Benchmarks of the request path's parts and of a whole request through
// Gateway.ServeHTTP with an in-memory upstream. Read them as ratios to
// BenchmarkP256Verify in gateway/auth (one signature check, the floor of
// a DPoP request), measured in the same run.

func BenchmarkRouteMatch(b *testing.B) {
	var routes []*route
	for _, p := range []string{"/", "/api", "/api/v1", "/api/v1/search", "/api/v1/search/properties", "/tools", "/mcp", "/public/v1/a", "/public/v1/b", "/public/v1/c"} {
		routes = append(routes, &route{name: p, prefix: p})
	}
	t := newRouteTable(routes)
	b.ReportAllocs()
	for b.Loop() {
		if t.match("api.example.com", "/public/v1/c/items/42", "GET") == nil {
			b.Fatal("no match")
		}
	}
}

func BenchmarkClientIP(b *testing.B) {
	tp := trustedProxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.2.3:5555"
	r.Header.Set("X-Forwarded-For", "203.0.113.9, 192.168.1.1, 10.9.9.9")
	b.ReportAllocs()
	for b.Loop() {
		if ip, _ := tp.clientIP(r); !ip.IsValid() {
			b.Fatal("no ip")
		}
	}
}

func BenchmarkWriteLimitHeaders(b *testing.B) {
	h := http.Header{}
	now := time.Now()
	l := ratelimit.Limit{Count: 600, Period: time.Minute, Burst: 600}
	d := ratelimit.Decision{Allowed: true, Limit: 600, Remaining: 599, Reset: now.Add(100 * time.Millisecond)}
	b.ReportAllocs()
	for b.Loop() {
		writeLimitHeaders(h, "client", l, d, now)
	}
}

// memoryUpstream answers every proxied request in memory, so the benchmark
// measures the gateway and not a socket.
type memoryUpstream struct{}

func (memoryUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(`{"ok":true}`)),
		ContentLength: 11, Request: r,
	}, nil
}

// benchEnv is an env whose routes forward to memoryUpstream and whose
// budgets never run out.
func benchEnv(b *testing.B) *env {
	e := newEnvWith(b, "  auth_failures: {rate: 100000000/m}", "")
	s := e.gw.snap.Load()
	for _, rt := range s.routes {
		rt.proxy.Transport = memoryUpstream{}
		for tier := range rt.limits {
			rt.limits[tier] = ratelimit.Limit{Count: 1 << 30, Period: time.Minute, Burst: 1 << 30}
		}
	}
	e.clock = nil
	e.gw.clock = time.Now
	e.gw.log = discardLogger()
	return e
}

func benchServe(b *testing.B, e *env, mk func(i int) *http.Request) {
	b.Helper()
	reqs := make([]*http.Request, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%1024 == 0 {
			// Requests (and their one-time proofs) are made outside the timer.
			b.StopTimer()
			reqs = reqs[:0]
			for j := 0; j < 1024; j++ {
				reqs = append(reqs, mk(i+j))
			}
			b.StartTimer()
		}
		w := httptest.NewRecorder()
		e.gw.ServeHTTP(w, reqs[i%1024])
		if w.Code != 200 {
			b.Fatalf("got %d %s", w.Code, w.Body)
		}
	}
}

func BenchmarkServeHTTPAnonymous(b *testing.B) {
	e := benchEnv(b)
	benchServe(b, e, func(int) *http.Request { return httptest.NewRequest("GET", "http://gw.example/public/x", nil) })
}

func BenchmarkServeHTTPBearer(b *testing.B) {
	e := benchEnv(b)
	tok := e.iss.BoundToken(b, nil, "agent-1", "tools:call", nil)
	benchServe(b, e, func(int) *http.Request {
		r := httptest.NewRequest("GET", "http://gw.example/public/x", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	})
}

func BenchmarkServeHTTPDPoP(b *testing.B) {
	e := benchEnv(b)
	tok := e.token(nil)
	benchServe(b, e, func(int) *http.Request {
		r := httptest.NewRequest("GET", "http://gw.example/tools/x", nil)
		proof, err := e.key.Proof("GET", "http://gw.example/tools/x", tok, "", time.Now())
		if err != nil {
			b.Fatal(err)
		}
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", proof)
		return r
	})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkFootprint measures what 1,000,000 distinct anonymous client
// addresses (one bucket each, in the local limiter) and 1,000,000 live
// proof claims (in the memory replay store) hold together, as the heap in
// use after a collection; it reports MB (the target: at most 300).
func BenchmarkFootprint(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		before := heapAfterGC()
		now := time.Now()
		clock := func() time.Time { return now }
		lim := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: n, Clock: clock})
		rep := replay.NewMemory(replay.MemoryOptions{MaxEntries: n, Clock: clock})
		l := ratelimit.Limit{Count: 60, Period: time.Minute, Burst: 60}
		ctx := context.Background()
		for i := 0; i < n; i++ {
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			lim.AllowN(ctx, bucketKey("public", "anonymous", nil, limitKey(ip)), l, 1)
			rep.Claim(ctx, fmt.Sprintf("jti-%d", i), time.Minute)
		}
		after := heapAfterGC()
		if lim.Len() < n*99/100 || rep.Len() < n*99/100 {
			b.Fatalf("held %d buckets and %d claims, want about %d each", lim.Len(), rep.Len(), n)
		}
		b.ReportMetric(float64(after-before)/1e6, "MB")
		runtime.KeepAlive(lim)
		runtime.KeepAlive(rep)
	}
}

// BenchmarkFormScan measures reading a 1 MiB form body with no token
// through tokenInForm and its formGuard, against io.Copy of the same body
// (the baseline, what the proxy does with a body that is not a form), in
// 32 KiB reads as the proxy makes them, and in 1-byte reads, the worst a
// client's pieces could be.
func BenchmarkFormScan(b *testing.B) {
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	for i := 0; mp.Len() < 1<<20; i++ {
		mw.WriteField("field"+strconv.Itoa(i), strings.Repeat("v", 1000))
	}
	mw.Close()
	// Parts whose headers are folded lines, as many as a header block
	// holds: the dearest header blocks to read.
	folded := "--b\r\nContent-Disposition: form-data;" + strings.Repeat("\r\n ", maxPartHeader/3-20) + "name=x\r\n\r\nv\r\n"
	bodies := []struct{ name, contentType, body string }{
		{"multipart-folded", "multipart/form-data; boundary=b", strings.Repeat(folded, 1<<20/len(folded)) + "--b--\r\n"},
		{"baseline", "application/octet-stream", mp.String()},
		{"urlencoded", "application/x-www-form-urlencoded", strings.Repeat("field=value&", 1<<20/12)},
		{"urlencoded-one-value", "application/x-www-form-urlencoded", "field=" + strings.Repeat("v", 1<<20)},
		{"multipart", mw.FormDataContentType(), mp.String()},
	}
	for _, bb := range bodies {
		for _, piece := range []int{32 << 10, 1} {
			if piece == 1 && bb.name != "multipart" && bb.name != "urlencoded" {
				continue
			}
			b.Run(bb.name+"/"+strconv.Itoa(piece), func(b *testing.B) {
				b.SetBytes(int64(len(bb.body)))
				b.ReportAllocs()
				buf := make([]byte, piece)
				for b.Loop() {
					r := httptest.NewRequest("POST", "/", strings.NewReader(bb.body))
					r.Header.Set("Content-Type", bb.contentType)
					if tokenInForm(r) {
						b.Fatal("found a token")
					}
					if n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r.Body}, buf); err != nil || n != int64(len(bb.body)) {
						b.Fatalf("read %d of %d bytes: %v", n, len(bb.body), err)
					}
				}
			})
		}
	}
}
