package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway"
)

// inProcess runs runServers on cfgText (%[1]s: the upstream) in the test's
// process and returns the gateway's URL and a func that sends SIGTERM
// (cancels) and waits for runServers to return.
func inProcess(t *testing.T, cfgText, upstream string) (gw string, stop func() time.Duration) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(cfgText, upstream)), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	g, err := gateway.New(cfg, gateway.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := runServers(ctx, cfg, g, log, ln, nil); err != nil {
			t.Error(err)
		}
	}()
	stopped := false
	stop = func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("runServers did not return")
		}
		return time.Since(start)
	}
	t.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

// streamConfig has a short read_timeout, to show what outlives it.
const streamConfig = `
server:
  admin_listen: "off"
  read_timeout: 500ms
  shutdown_grace: 20s
routes:
  - name: a
    path_prefix: /
    upstream: %[1]s
    auth: none
`

// TestStreamOutlivesReadTimeout: server.read_timeout bounds reading the
// request; an SSE answer (spec §3.8: a stream may run longer) is not cut
// when it runs past it, whether the request had a body (MCP's streamable
// HTTP POSTs a JSON-RPC message and gets an SSE stream back) or not.
func TestStreamOutlivesReadTimeout(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-time.After(1500 * time.Millisecond): // past read_timeout
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: last\n\n")
	}))
	defer upstream.Close()
	gw, _ := inProcess(t, streamConfig, upstream.URL)
	for _, tc := range []struct{ name, method, body string }{
		{"ok/get", "GET", ""},
		{"ok/post-json", "POST", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, gw+"/mcp", strings.NewReader(tc.body))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || !strings.Contains(string(body), "data: last") {
				t.Fatalf("got %q, %v: the stream was cut", body, err)
			}
		})
	}
}

// newEchoUpgrade is an upstream that switches protocols and echoes each
// line it gets.
func newEchoUpgrade() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo: " + line)
			brw.Flush()
		}
	}))
}

// dialUpgrade opens an upgraded connection through the gateway at addr.
func dialUpgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return conn, br
}

// TestWebSocketOutlivesReadTimeout: an upgraded connection idle past
// server.read_timeout still carries bytes both ways.
func TestWebSocketOutlivesReadTimeout(t *testing.T) {
	upstream := newEchoUpgrade()
	defer upstream.Close()
	gw, _ := inProcess(t, streamConfig, upstream.URL)
	conn, br := dialUpgrade(t, strings.TrimPrefix(gw, "http://"))
	for i := 0; i < 2; i++ {
		fmt.Fprintf(conn, "ping %d\n", i)
		if line, err := br.ReadString('\n'); line != fmt.Sprintf("echo: ping %d\n", i) {
			t.Fatalf("round %d: got %q, %v", i, line, err)
		}
		time.Sleep(time.Second) // idle past read_timeout
	}
}

// TestWebSocketDrain: SIGTERM gives an upgraded connection (a WebSocket)
// the grace period, as it gives streams: runServers, after which the
// process exits, does not return while one is open and within the grace.
func TestWebSocketDrain(t *testing.T) {
	upstream := newEchoUpgrade()
	defer upstream.Close()
	gw, stop := inProcess(t, streamConfig, upstream.URL)
	addr := strings.TrimPrefix(gw, "http://")
	conn, br := dialUpgrade(t, addr)
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// Draining has begun once the listener refuses new connections.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts")
		}
	}
	fmt.Fprint(conn, "ping\n")
	if line, err := br.ReadString('\n'); line != "echo: ping\n" {
		t.Fatalf("while draining: got %q, %v", line, err)
	}
	select {
	case <-stopped:
		t.Fatal("runServers returned (the process would exit) with a WebSocket open, within the grace period")
	case <-time.After(time.Second):
	}
	conn.Close()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("runServers did not return once the WebSocket closed")
	}
}

// TestWebSocketDrainGraceOver: an upgraded connection still open when the
// grace period is over is closed, and runServers returns.
func TestWebSocketDrainGraceOver(t *testing.T) {
	upstream := newEchoUpgrade()
	defer upstream.Close()
	gw, stop := inProcess(t, strings.Replace(streamConfig, "shutdown_grace: 20s", "shutdown_grace: 300ms", 1), upstream.URL)
	conn, br := dialUpgrade(t, strings.TrimPrefix(gw, "http://"))
	stop() // fails the test unless runServers returns
	fmt.Fprint(conn, "ping\n")
	if line, err := br.ReadString('\n'); err == nil {
		t.Fatalf("after the grace period: got %q, want the connection closed", line)
	}
}
