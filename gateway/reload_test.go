package gateway

import (
	"bufio"
	"fmt"
	"strings"
	"testing"

	"github.com/dpopgate/dpopgate/config"
)

// TestReload: a new config takes effect for new requests, a stream already
// flowing finishes on the old one, the issuer's keys are not fetched again
// and the buckets keep their counts. A reload that cannot apply leaves the
// running config in place.
func TestReload(t *testing.T) {
	e := newEnv(t, "")
	tok := e.token(nil)
	// An SSE stream in flight across the reload.
	stream, err := e.srv.Client().Do(e.dpop(e.req("GET", "/sse/events"), tok))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	br := bufio.NewReader(stream.Body)
	if line := readLine(t, br); line != "data: first\n" {
		t.Fatalf("got %q", line)
	}
	for i := 0; i < 3; i++ { // 3 of the anonymous 5
		e.do(e.req("GET", "/public/x"))
	}
	other := newUpstream(t)
	text := fmt.Sprintf(baseConfig, e.iss.URL, e.up.URL, "  auth_failures: {rate: 100/m}") + fmt.Sprintf(`
  - name: added
    path_prefix: /added
    upstream: %s
    auth: none
`, other.URL)
	text = strings.Replace(text, "scopes: [tools:call]", "scopes: [tools:admin]", 1)
	cfg, err := config.Parse("reload.yaml", []byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Reload(cfg); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if res := e.do(e.req("GET", "/added/x")); res.status != 200 {
		t.Fatalf("new route: got %d", res.status)
	}
	if res := e.do(e.dpop(e.req("GET", "/tools/x"), tok)); res.status != 403 {
		t.Fatalf("changed scope: got %d %s, want 403", res.status, res.body)
	}
	// The buckets carried over: 2 of the anonymous 5 are left.
	passed := 0
	for i := 0; i < 5; i++ {
		if e.do(e.req("GET", "/public/x")).status == 200 {
			passed++
		}
	}
	if passed != 2 {
		t.Fatalf("after reload: %d anonymous requests passed, want the 2 left in the bucket", passed)
	}
	if got := e.iss.Fetches.Load(); got != 1 {
		t.Fatalf("got %d JWKS fetches, want the keys carried over (1)", got)
	}
	// The stream still flows to its end.
	close(e.up.release)
	readLine(t, br)
	if line := readLine(t, br); line != "data: last\n" {
		t.Fatalf("stream across the reload: got %q", line)
	}

	// A change only a restart can make: refused, old config in place.
	bad := *cfg
	bad.Server.Listen = "127.0.0.1:1"
	if err := e.gw.Reload(&bad); err == nil || !strings.Contains(err.Error(), "server.listen: changing it needs a restart") {
		t.Fatalf("got %v, want the listen change refused", err)
	}
	if res := e.do(e.req("GET", "/added/x")); res.status != 200 {
		t.Fatalf("after a refused reload: got %d", res.status)
	}
}
