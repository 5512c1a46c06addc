package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// served is a `dpopgate serve` subprocess and what its log says.
type served struct {
	cmd   *exec.Cmd
	gw    string // http://addr of the gateway listener
	admin string
	mu    sync.Mutex
	lines []map[string]any
	seen  chan map[string]any
}

func startServe(t *testing.T, bin, config string) *served {
	t.Helper()
	s := &served{seen: make(chan map[string]any, 100)}
	s.cmd = exec.Command(bin, "serve", "--config", config)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				s.mu.Lock()
				s.lines = append(s.lines, m)
				s.mu.Unlock()
				s.seen <- m
			}
		}
		close(s.seen)
	}()
	for s.gw == "" || s.admin == "" {
		m := s.waitFor(t, "listening")
		addr, _ := m["addr"].(string)
		if m["msg"] == "gateway listening" {
			s.gw = "http://" + addr
		} else {
			s.admin = "http://" + addr
		}
	}
	return s
}

// waitFor returns the next log line whose msg contains want.
func (s *served) waitFor(t *testing.T, want string) map[string]any {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-s.seen:
			if !ok {
				t.Fatalf("the process ended before logging %q", want)
			}
			if msg, _ := m["msg"].(string); strings.Contains(msg, want) {
				return m
			}
		case <-timeout:
			t.Fatalf("no log line %q within 20s", want)
		}
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

const serveConfig = `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  shutdown_grace: 20s
routes:
  - name: a
    path_prefix: /a
    upstream: %[1]s
    auth: none
%[2]s`

// TestServeReloadAndDrain: SIGHUP applies a new file and survives a bad
// one; SIGTERM turns /readyz false, lets an in-flight request finish, and
// exits 0.
func TestServeReloadAndDrain(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a/slow" {
			close(arrived)
			<-release
		}
		fmt.Fprint(w, "ok")
	}))
	defer upstream.Close()
	bin := buildBinary(t)
	cfgPath := filepath.Join(t.TempDir(), "gateway.yaml")
	write := func(extra string) {
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(serveConfig, upstream.URL, extra)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	s := startServe(t, bin, cfgPath)
	if got := get(t, s.gw+"/a/x"); got != 200 {
		t.Fatalf("got %d", got)
	}
	if got := get(t, s.gw+"/b/x"); got != 404 {
		t.Fatalf("route b before reload: got %d, want 404", got)
	}

	// SIGHUP with a new route.
	write("  - name: b\n    path_prefix: /b\n    upstream: " + upstream.URL + "\n    auth: none\n")
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitFor(t, "config reloaded")
	if got := get(t, s.gw+"/b/x"); got != 200 {
		t.Fatalf("route b after reload: got %d, want 200", got)
	}

	// SIGHUP with a broken file: logged, the running config stays.
	write("  - name: c\n    path_prefx: /c\n")
	s.cmd.Process.Signal(syscall.SIGHUP)
	m := s.waitFor(t, "config reload failed")
	if errText, _ := m["error"].(string); !strings.Contains(errText, "path_prefx: unknown key") {
		t.Fatalf("got error %q, want the bad key named", errText)
	}
	if got := get(t, s.gw+"/b/x"); got != 200 {
		t.Fatalf("after a failed reload: got %d, want 200", got)
	}

	// SIGTERM with a slow request in flight.
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(s.gw + "/a/slow")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-arrived
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.waitFor(t, "draining")
	if got := get(t, s.admin+"/readyz"); got != 503 {
		t.Fatalf("readyz while draining: got %d, want 503", got)
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := fresh.Get(s.gw + "/a/x"); err == nil {
		t.Fatalf("the gateway still accepts new connections while draining")
	}
	close(release)
	if got := <-done; got != 200 {
		t.Fatalf("the in-flight request: got %d, want 200", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitErr := make(chan error, 1)
	go func() { waitErr <- s.cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("exit: %v, want 0", err)
		}
	case <-ctx.Done():
		t.Fatalf("the process did not exit after draining")
	}
}
