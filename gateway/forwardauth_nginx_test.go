package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// ingressNginxManifest is the Ingress whose auth-url annotations the test
// renders into nginx's configuration, so that what is shipped is what runs.
const ingressNginxManifest = "../deploy/kubernetes/ingress/ingress-nginx.yaml"

// nginxAuthConfig is an nginx in front of an upstream, asking the gateway
// about every request the way ingress-nginx renders the annotations of
// deploy/kubernetes/ingress/ingress-nginx.yaml:
//
//   - auth-url: the internal location /_external-auth-Lw-Prefix, with the
//     proxy_set_header lines of ingress-nginx's template (X-Original-URL,
//     X-Original-Method, X-Forwarded-Proto "", the client's own headers
//     passed on), and proxy_pass to the gateway's /auth;
//   - auth-response-headers: one auth_request_set + proxy_set_header pair
//     per header (ingress-nginx's buildAuthResponseHeaders), so the
//     identity replaces anything the client sent, and Authorization and
//     DPoP, which the gateway never answers with, are removed;
//   - configuration-snippet and server-snippet, as they are.
//
// %[1]s is the prefix directory, %[2]d nginx's port, %[3]s the gateway's
// host:port, %[4]s the upstream's, %[5]s a user directive, %[6]s the auth
// URL's path, %[7]s the auth-response-headers lines, %[8]s the
// configuration snippet, %[9]s the server snippet.
const nginxAuthConfig = `
%[5]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;

    server {
        listen 127.0.0.1:%[2]d;

%[9]s

        location = /_external-auth-Lw-Prefix {
            internal;
            proxy_pass_request_body     off;
            proxy_set_header            Content-Length          "";
            proxy_set_header            X-Forwarded-Proto       "";
            proxy_set_header            X-Request-ID            $request_id;
            proxy_set_header            Host                    %[3]s;
            proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
            proxy_set_header            X-Original-Method       $request_method;
            proxy_set_header            X-Sent-From             "nginx-ingress-controller";
            proxy_set_header            X-Real-IP               $remote_addr;
            proxy_set_header            X-Forwarded-For         $remote_addr;
            proxy_set_header            X-Auth-Request-Redirect $request_uri;
            proxy_http_version          1.1;
            proxy_pass_request_headers  on;
            proxy_pass                  http://%[3]s%[6]s;
        }

        location / {
            auth_request        /_external-auth-Lw-Prefix;
            auth_request_set    $auth_cookie $upstream_http_set_cookie;
            add_header          Set-Cookie $auth_cookie;
%[7]s

            proxy_set_header    Host              $http_host;
            proxy_set_header    X-Request-ID      $request_id;
            proxy_set_header    X-Forwarded-For   $remote_addr;
            proxy_set_header    X-Forwarded-Host  $http_host;
            proxy_set_header    X-Forwarded-Proto $scheme;
            proxy_http_version  1.1;

%[8]s

            proxy_pass          http://%[4]s;
        }
    }
}
`

// ingressAnnotations reads the annotations of the Ingress in
// ingressNginxManifest that has an auth-url.
func ingressAnnotations(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(ingressNginxManifest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for {
		var doc struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: no Ingress with an auth-url (%v)", ingressNginxManifest, err)
		}
		if a := doc.Metadata.Annotations; a["nginx.ingress.kubernetes.io/auth-url"] != "" {
			return a
		}
	}
}

// renderAuthConfig renders nginxAuthConfig from the manifest's annotations.
func renderAuthConfig(t *testing.T, dir string, port int, gateway, upstream, user string) string {
	t.Helper()
	a := ingressAnnotations(t)
	authURL, err := url.Parse(a["nginx.ingress.kubernetes.io/auth-url"])
	if err != nil {
		t.Fatal(err)
	}
	var headers strings.Builder
	for i, h := range strings.Split(a["nginx.ingress.kubernetes.io/auth-response-headers"], ",") {
		h = strings.TrimSpace(h)
		v := strings.ReplaceAll(strings.ToLower(h), "-", "_")
		fmt.Fprintf(&headers, "            auth_request_set $authHeader%d $upstream_http_%s;\n", i, v)
		fmt.Fprintf(&headers, "            proxy_set_header '%s' $authHeader%d;\n", h, i)
	}
	return fmt.Sprintf(nginxAuthConfig, dir, port, gateway, upstream, user, authURL.Path, headers.String(),
		a["nginx.ingress.kubernetes.io/configuration-snippet"], a["nginx.ingress.kubernetes.io/server-snippet"])
}

// nginx is a running nginx; it stops when the test ends.
type nginx struct {
	URL string
	dir string
}

// startNginx runs the Debian nginx binary on a free port with its own
// prefix directory, or skips the test when there is no nginx (.ci/run
// installs it).
func startNginx(t *testing.T, gateway, upstream string) *nginx {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Skip("nginx is not installed")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		// As root, nginx would switch its workers to nobody, who cannot
		// read a 0700 temporary directory.
		user = "user root root;"
	}
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	text := renderAuthConfig(t, dir, port, strings.TrimPrefix(gateway, "http://"), strings.TrimPrefix(upstream, "http://"), user)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf, "-g", "daemon off;")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	n := &nginx{URL: "http://127.0.0.1:" + strconv.Itoa(port), dir: dir}
	// nginx has no readiness signal but its port: poll it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s\n%s", err, out.String(), log)
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen in time: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *nginx) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNginxAuthRequest is issue 6's end-to-end check: a real nginx,
// configured as ingress-nginx renders the shipped Ingress's auth-url
// annotations, asks the gateway about
// each request; through nginx, a proof for the original method and URL
// passes and the upstream gets the identity; a proof for the auth URL, a
// replayed proof and a client's forged X-Forwarded-Uri are refused; and
// anonymous traffic is limited, with the rate-limit fields in view.
func TestNginxAuthRequest(t *testing.T) {
	e := newEnv(t, forwardAuthConfig(true))
	ng := startNginx(t, e.srv.URL, e.up.URL)
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(r *http.Request) result {
		t.Helper()
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		res := result{status: resp.StatusCode, header: resp.Header}
		res.body, _ = io.ReadAll(resp.Body)
		json.Unmarshal(res.body, &res.err)
		json.Unmarshal(res.body, &res.echo)
		return res
	}
	req := func(method, path string, hdr ...string) *http.Request {
		r, err := http.NewRequest(method, ng.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	upstreamSaw := func() *http.Request {
		e.up.mu.Lock()
		defer e.up.mu.Unlock()
		return e.up.last
	}
	tok := e.token(nil)

	// A proof for the original method and URL: allowed, and the upstream
	// gets the identity, not the credentials nor the client's X-Auth-*.
	proof, _ := e.key.Proof("POST", ng.URL+"/tools/x", tok, "", e.clock.Now())
	creds := []string{"Authorization", "DPoP " + tok, "DPoP", proof}
	res := do(req("POST", "/tools/x?q=1", append(creds, "X-Auth-Subject", "admin")...))
	if res.status != 200 {
		t.Fatalf("original method and URL: got %d %s, want 200\n%s", res.status, res.body, ng.errorLog())
	}
	h := res.echo.Header
	for name, want := range map[string]string{
		"X-Auth-Subject": "user-of-agent-1", "X-Auth-Client-Id": "agent-1", "X-Auth-Scope": "tools:call",
		"X-Auth-Tier": "client", "X-Auth-Issuer": e.iss.URL, "X-Auth-Jkt": e.key.Thumbprint(),
		"Authorization": "", "Dpop": "",
	} {
		switch got := strings.Join(h.Values(name), ","); {
		case want == "" && got != "":
			t.Errorf("upstream got %s, want it removed", name)
		case got != want:
			t.Errorf("upstream got %s %q, want %q", name, got, want)
		}
	}
	if res.echo.Method != "POST" || res.echo.Path != "/tools/x" || res.echo.Query != "q=1" {
		t.Errorf("upstream got %s %s?%s, want POST /tools/x?q=1", res.echo.Method, res.echo.Path, res.echo.Query)
	}
	if res.header.Get("X-RateLimit-Limit") != "50" || res.header.Get("X-RateLimit-Remaining") != "49" {
		t.Errorf("client got rate-limit fields %q", res.header)
	}

	// The same proof again: a replay.
	before := upstreamSaw()
	res = do(req("POST", "/tools/x?q=1", creds...))
	if res.status != 401 || !strings.HasPrefix(res.header.Get("WWW-Authenticate"), `DPoP error="invalid_dpop_proof"`) {
		t.Fatalf("replay: got %d %q, want 401 with a DPoP invalid_dpop_proof challenge", res.status, res.header)
	}

	// A proof for the auth URL instead of the original one.
	authProof, _ := e.key.Proof("GET", e.srv.URL+"/auth", tok, "", e.clock.Now())
	res = do(req("GET", "/tools/x", "Authorization", "DPoP "+tok, "DPoP", authProof))
	if ch := res.header.Get("WWW-Authenticate"); res.status != 401 || !strings.Contains(ch, `error="invalid_dpop_proof"`) ||
		!strings.Contains(ch, "htu does not match") || !strings.Contains(ch, `resource_metadata="`+ng.URL+`/.well-known/oauth-protected-resource/tools"`) {
		t.Fatalf("proof for the auth URL: got %d %q, want 401 with the challenge", res.status, ch)
	}

	// A client's X-Forwarded-Uri, which nginx passes on, names another
	// request than X-Original-URL: refused.
	publicProof, _ := e.key.Proof("GET", ng.URL+"/public/x", tok, "", e.clock.Now())
	res = do(req("GET", "/tools/x", "Authorization", "DPoP "+tok, "DPoP", publicProof,
		"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "http", "X-Forwarded-Host", strings.TrimPrefix(ng.URL, "http://"), "X-Forwarded-Uri", "/public/x"))
	if res.status != 400 || res.err.Error != "invalid_request" {
		t.Fatalf("forged X-Forwarded-Uri: got %d %s, want 400 invalid_request", res.status, res.body)
	}
	if upstreamSaw() != before {
		t.Fatalf("a refused request reached the upstream")
	}

	// Anonymous traffic: 5 a minute, the budget in view, then 429.
	for i := 4; i >= 0; i-- {
		res := do(req("GET", "/public/x"))
		if res.status != 200 || res.header.Get("X-RateLimit-Limit") != "5" || res.header.Get("X-RateLimit-Remaining") != strconv.Itoa(i) ||
			res.header.Get("RateLimit-Policy") != `"anonymous";q=5;w=60` || res.echo.Header.Get("X-Auth-Tier") != "anonymous" {
			t.Fatalf("anonymous call: got %d %q upstream %q, want 200 with %d left", res.status, res.header, res.echo.Header, i)
		}
	}
	res = do(req("GET", "/public/x"))
	if res.status != 429 || res.err.Error != "rate_limited" || res.header.Get("Retry-After") == "" ||
		res.header.Get("X-RateLimit-Remaining") != "0" || res.header.Get("X-RateLimit-Limit") != "5" {
		t.Fatalf("over budget: got %d %s %q, want 429 with Retry-After and the rate-limit fields", res.status, res.body, res.header)
	}
}
