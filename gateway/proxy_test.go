package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// TestHTUBehindTrustedProxy: behind a TLS-terminating proxy the proof names
// the public https URL; the gateway rebuilds it from the trusted forwarding
// headers, and ignores the same headers from anyone else.
func TestHTUBehindTrustedProxy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		extra   string
		proofTo string // URL the client signed
		hdr     []string
		status  int
	}{
		{"ok/trusted-forwarded-headers", "server:\n  trusted_proxies: [127.0.0.1/32]\n", "https://api.example.com/tools/x",
			[]string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com", "X-Forwarded-For", "198.51.100.9"}, 200},
		{"ok/public-url", "server:\n  public_url: https://api.example.com\n", "https://api.example.com/tools/x", nil, 200},
		{"fail/untrusted-forwarded-headers", "", "https://api.example.com/tools/x",
			[]string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com"}, 401},
		{"fail/trusted-but-other-host-signed", "server:\n  trusted_proxies: [127.0.0.1/32]\n", "https://evil.example.com/tools/x",
			[]string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "api.example.com"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.extra)
			tok := e.token(nil)
			proof, _ := e.key.Proof("GET", tc.proofTo, tok, "", e.clock.Now())
			r := e.req("GET", "/tools/x", append(tc.hdr, "Authorization", "DPoP "+tok, "DPoP", proof)...)
			res := e.do(r)
			if res.status != tc.status {
				t.Fatalf("got %d %s, want %d", res.status, res.body, tc.status)
			}
			if tc.status == 401 && res.err.Error != "invalid_dpop_proof" {
				t.Fatalf("got %s, want invalid_dpop_proof", res.body)
			}
			if tc.name == "ok/trusted-forwarded-headers" {
				h := res.echo.Header
				if h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-Host") != "api.example.com" ||
					h.Get("X-Forwarded-For") != "198.51.100.9, 127.0.0.1" {
					t.Fatalf("upstream got forwarding headers %q", h)
				}
			}
		})
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	e := newEnv(t, "server:\n  public_url: https://api.example.com\n")
	get := func(path string) (int, resourceMetadata) {
		res := e.do(e.req("GET", path))
		var md resourceMetadata
		json.Unmarshal(res.body, &md)
		return res.status, md
	}
	status, md := get("/.well-known/oauth-protected-resource")
	if status != 200 || md.Resource != "https://api.example.com" || len(md.AuthorizationServers) != 1 ||
		md.AuthorizationServers[0] != e.iss.URL || md.DPoPBoundAccessTokensRequired ||
		strings.Join(md.ScopesSupported, " ") != "tools:call" || strings.Join(md.BearerMethodsSupported, ",") != "header" ||
		len(md.DPoPSigningAlgValuesSupported) == 0 {
		t.Fatalf("root document: got %d %+v", status, md)
	}
	status, md = get("/.well-known/oauth-protected-resource/tools")
	if status != 200 || md.Resource != "https://api.example.com/tools" || !md.DPoPBoundAccessTokensRequired ||
		strings.Join(md.ScopesSupported, " ") != "tools:call" {
		t.Fatalf("route document: got %d %+v", status, md)
	}
	if status, _ := get("/.well-known/oauth-protected-resource/strip"); status != 404 {
		t.Fatalf("auth: none route: got %d, want 404", status)
	}
	// The 401 of the route points at its document.
	res := e.do(e.req("GET", "/tools/x"))
	if !strings.Contains(res.header.Get("WWW-Authenticate"), `resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/tools"`) {
		t.Fatalf("got %q", res.header.Get("WWW-Authenticate"))
	}
}

// TestWebSocketUpgrade: an upgrade passes through the gateway to the
// upstream, and bytes flow both ways on the hijacked connection.
func TestWebSocketUpgrade(t *testing.T) {
	e := newEnv(t, "")
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := e.token(nil)
	proof, _ := e.key.Proof("GET", e.srv.URL+"/tools/ws", tok, "", e.clock.Now())
	fmt.Fprintf(conn, "GET /tools/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: DPoP %s\r\nDPoP: %s\r\n\r\n",
		strings.TrimPrefix(e.srv.URL, "http://"), tok, proof)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %d, want 101", resp.StatusCode)
	}
	fmt.Fprint(conn, "ping\n")
	if line, _ := br.ReadString('\n'); line != "echo: ping\n" {
		t.Fatalf("got %q over the upgraded connection, want the echo", line)
	}
}

// TestProxyErrorsInTheLog: what the reverse proxy reports itself (an
// upstream that cuts a response short) goes to the gateway's JSON log as
// a warning, not as a plain line on stderr.
func TestProxyErrorsInTheLog(t *testing.T) {
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
		buf.Flush()
		conn.Close()
	}))
	defer cut.Close()
	e := newEnv(t, routeTo("cut", cut.URL, "none"))
	// The client sees the cut too, before or after the headers.
	if resp, err := e.srv.Client().Get(e.srv.URL + "/cut/x"); err == nil {
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.logs.String(), "ReverseProxy read error during body copy") {
		if time.Now().After(deadline) {
			t.Fatalf("log has no line for the cut response:\n%s", e.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if strings.Contains(rec.Msg, "ReverseProxy read error") && rec.Level != "WARN" {
			t.Fatalf("got level %s, want WARN: %q", rec.Level, line)
		}
	}
}

// TestEarlyHints: a 103 Early Hints from the upstream reaches the client,
// and the final answer still carries the gateway's X-Request-Id (the
// reverse proxy clears the answer's header fields after writing a 1xx).
func TestEarlyHints(t *testing.T) {
	hints := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("X-Request-Id", "the-upstream's")
		fmt.Fprint(w, "final")
	}))
	defer hints.Close()
	e := newEnv(t, routeTo("hints", hints.URL, "none"))
	var early []string
	r := e.req("GET", "/hints/x")
	r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			early = append(early, fmt.Sprint(code, " ", h.Get("Link")))
			return nil
		},
	}))
	res := e.do(r)
	if res.status != 200 || string(res.body) != "final" {
		t.Fatalf("got %d %q", res.status, res.body)
	}
	if len(early) != 1 || early[0] != "103 </a.css>; rel=preload" {
		t.Fatalf("got 1xx answers %q, want the 103 with its Link", early)
	}
	if id := res.header.Values("X-Request-Id"); len(id) != 1 || id[0] == "the-upstream's" {
		t.Fatalf("final answer's X-Request-Id: %q, want the gateway's", id)
	}
	// The gateway's own answer for an upstream that fails has it too.
	for _, path := range []string{"/hang/x", "/dead/x"} {
		if res := e.do(e.req("GET", path)); res.status < 502 || len(res.header.Values("X-Request-Id")) != 1 {
			t.Fatalf("%s: got %d with X-Request-Id %q", path, res.status, res.header.Values("X-Request-Id"))
		}
	}
}

// TestClientBodyFailure: a request body that the client stops sending
// (it hangs up, or server.read_timeout runs out while it trickles) is the
// client's failure, not the upstream's: no 502 bad_gateway or 504
// gateway_timeout, which tell the client and the metrics that the
// upstream failed.
func TestClientBodyFailure(t *testing.T) {
	got := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		got <- fmt.Sprint(err)
		if err != nil {
			panic(http.ErrAbortHandler) // no answer of its own
		}
	}))
	defer up.Close()
	logs := &logBuffer{}
	e := startEnv(t, "  auth_failures: {rate: 100/m}", routeTo("upload", up.URL, "none"), logs)
	logText := logs.String
	// A second listener on the same gateway, with a short read_timeout.
	slow := httptest.NewUnstartedServer(e.gw)
	slow.Config.ReadTimeout = 300 * time.Millisecond
	slow.Start()
	defer slow.Close()
	status := func() string {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, line := range strings.Split(logText(), "\n") {
				if strings.Contains(line, `"path":"/upload/x"`) {
					var rec struct {
						Status int    `json:"status"`
						Reason string `json:"reason"`
					}
					json.Unmarshal([]byte(line), &rec)
					return fmt.Sprint(rec.Status, " ", rec.Reason)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		return "no log line"
	}
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	t.Run("fail/client-hangs-up", func(t *testing.T) {
		logs.Reset()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "PUT /upload/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("a", 1000))
		c.Close()
		<-got // the upstream has seen the body cut
		if s := status(); strings.HasPrefix(s, "502") || strings.HasPrefix(s, "504") {
			t.Fatalf("logged %s, want the client's failure", s)
		}
	})
	t.Run("fail/body-past-read-timeout", func(t *testing.T) {
		logs.Reset()
		e.clock.Advance(time.Minute)
		c, err := net.Dial("tcp", strings.TrimPrefix(slow.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "PUT /upload/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("a", 1000))
		// Send nothing more: read_timeout runs out.
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_request"`) {
			t.Fatalf("got %d %s, want 400 invalid_request", resp.StatusCode, body)
		}
		if s := status(); s != "400 request_body_timeout" {
			t.Fatalf("logged %s", s)
		}
	})
}

// TestNoTransparentCompression: the upstream gets the client's
// Accept-Encoding, or none, as sent, and the client gets the upstream's
// body as sent: Go's transport would otherwise ask the upstream for gzip
// on its own and unpack it, dropping Content-Length and leaving an ETag
// that no longer names the bytes (nginx and Envoy pass the field through).
func TestNoTransparentCompression(t *testing.T) {
	e := newEnv(t, "")
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, tc := range []struct{ name, ae string }{
		{"fail/client-asks-no-encoding", ""},
		{"ok/client-asks-gzip", "gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.req("GET", "/public/x")
			if tc.ae != "" {
				r.Header.Set("Accept-Encoding", tc.ae)
			}
			resp, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var echo struct{ Header http.Header }
			if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(echo.Header.Values("Accept-Encoding"), ","); got != tc.ae {
				t.Fatalf("upstream got Accept-Encoding %q, want %q", got, tc.ae)
			}
		})
	}
}

// TestUpstreamDPoPNonce: DPoP is the gateway's (the upstream never sees a
// proof), so an upstream's own DPoP-Nonce does not reach the client, who
// would sign it into proofs the gateway then refuses; the gateway's own
// nonce, when it hands one out, is the only one.
func TestUpstreamDPoPNonce(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DPoP-Nonce", "upstreams-own-nonce")
		w.Write([]byte("{}"))
	}))
	defer up.Close()
	e := newEnv(t, routeTo("noncey", up.URL, "optional"))
	res := e.do(e.req("GET", "/noncey/x"))
	if got := res.header.Values("DPoP-Nonce"); res.status != 200 || len(got) != 0 {
		t.Fatalf("got %d with DPoP-Nonce %q, want 200 and none", res.status, got)
	}
}
