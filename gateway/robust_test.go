package gateway

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// TestRobustness throws malformed and hostile requests at a running
// gateway: huge and binary headers, 10,000 distinct client addresses and
// kids, truncated JWS, deeply nested JSON in proofs. Every answer must be
// one of the contract's, nothing may panic, and memory must stay bounded.
func TestRobustness(t *testing.T) {
	e := newEnvWith(t, "  auth_failures: {rate: 100000/m}", "")
	e.gw.log = slog.New(slog.DiscardHandler) // the test's log buffer would grow, not the gateway
	tok := e.token(nil)
	good := e.dpop(e.req("GET", "/tools/x"), tok)
	proof := good.Header.Get("DPoP")
	parts := strings.Split(proof, ".")
	nested := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":` +
		strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}`))
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 10_000
	kidTokens := make([]string, n)
	for i := range kidTokens {
		c := e.iss.Claims("agent-1", "tools:call")
		c["cnf"] = map[string]any{"jkt": e.key.Thumbprint()}
		kidTokens[i] = e.iss.TokenWithKID(t, c, fmt.Sprintf("kid-%d", i))
	}
	hostile := []func(i int) *http.Request{
		func(i int) *http.Request { // a new kid every time
			return e.dpop(e.req("GET", "/tools/x"), kidTokens[i])
		},
		func(i int) *http.Request { // binary junk in the credentials
			r := e.req("GET", "/tools/x")
			r.Header["Authorization"] = []string{"DPoP " + base64.RawURLEncoding.EncodeToString(randomBytes(rng, 200))}
			r.Header["Dpop"] = []string{string(randomBytes(rng, 300))}
			return r
		},
		func(i int) *http.Request { // truncated JWS proof
			return e.req("GET", "/tools/x", "Authorization", "DPoP "+tok, "DPoP", proof[:rng.IntN(len(proof))])
		},
		func(i int) *http.Request { // truncated token
			return e.req("GET", "/tools/x", "Authorization", "DPoP "+tok[:rng.IntN(len(tok))], "DPoP", proof)
		},
		func(i int) *http.Request { // deeply nested JSON in the proof header
			return e.req("GET", "/tools/x", "Authorization", "DPoP "+tok, "DPoP", nested+"."+parts[1]+"."+parts[2])
		},
		func(i int) *http.Request { // a huge credential
			return e.req("GET", "/tools/x", "Authorization", "DPoP "+strings.Repeat("A", 60_000))
		},
		func(i int) *http.Request { // anonymous
			return e.req("GET", "/public/x")
		},
	}
	// 431: a header block past max_header_bytes (the nested proof, the
	// huge credential), as the server itself answers over the network.
	allowed := map[int]bool{200: true, 400: true, 401: true, 429: true, 431: true, 503: true}
	// Each kind of hostile request from 10,000 distinct addresses, straight
	// into the handler (fast), then a round over the network to meet the
	// server's own limits.
	for kind, mk := range hostile {
		before := heapAfterGC()
		for i := 0; i < n; i++ {
			r := mk(i)
			r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:4000", kind, i>>8&255, i&255)
			rec := httptest.NewRecorder()
			e.gw.ServeHTTP(rec, r)
			if !allowed[rec.Code] {
				t.Fatalf("kind %d, request %d: got %d %s", kind, i, rec.Code, rec.Body)
			}
		}
		growth := int64(heapAfterGC()) - int64(before)
		t.Logf("kind %d: heap grew by %.2f MB over %d requests", kind, float64(growth)/1e6, n)
		// 10,000 new addresses cost 10,000 buckets (~150 B each); all else
		// is bounded caches. More than 8 MB for one kind would be a leak.
		if growth > 8<<20 {
			t.Fatalf("kind %d: heap grew by %.1f MB", kind, float64(growth)/1e6)
		}
	}
	for i := 0; i < 300; i++ {
		r := e.req("GET", "/public/x")
		for j := 0; j < 200; j++ { // past max_header_bytes: 431 from the server
			r.Header.Add(fmt.Sprintf("X-Junk-%d", j), string(randomASCII(rng, 200)))
		}
		resp, err := e.srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge && resp.StatusCode != 200 && resp.StatusCode != 429 {
			t.Fatalf("huge headers: got %d", resp.StatusCode)
		}
	}
	if got := e.iss.Fetches.Load(); got > 3 {
		t.Fatalf("10,000 random kids made %d JWKS fetches, want at most one per min_refresh_interval", got)
	}
	// Still serving.
	if res := e.do(e.dpop(e.req("GET", "/tools/x"), tok)); res.status != 200 {
		t.Fatalf("after the storm: got %d %s", res.status, res.body)
	}
}

func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

func randomASCII(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0x21 + rng.IntN(0x7e-0x21))
	}
	return b
}
