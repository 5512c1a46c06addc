package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpopgate/dpopgate/gateway/devauth"
)

// runCLI calls run as main does and returns stdout, stderr and the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut strings.Builder
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestCLIErrors: every failure is one clear line and an error (exit 1),
// never a stack trace.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.jwk")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	pub := filepath.Join(dir, "public.jwk")
	os.WriteFile(pub, []byte(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`), 0o600)
	key := filepath.Join(dir, "key.jwk")
	if out, _, err := runCLI(t, "keygen"); err != nil {
		t.Fatal(err)
	} else {
		os.WriteFile(key, []byte(out), 0o600)
	}
	srv := newDevIssuer(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"fail/unknown-command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"fail/keygen-bad-alg", []string{"keygen", "--alg", "HS256"}, `algorithm "HS256" is not one of`},
		{"fail/proof-no-key-file", []string{"proof", "--key", filepath.Join(dir, "missing.jwk"), "--url", "https://x/"}, "key file: open"},
		{"fail/proof-garbage-key", []string{"proof", "--key", garbage, "--url", "https://x/"}, "not a JWK"},
		{"fail/proof-public-key", []string{"proof", "--key", pub, "--url", "https://x/"}, "holds no private key"},
		{"fail/proof-relative-url", []string{"proof", "--key", key, "--url", "/tools"}, "is not an absolute http(s) URL"},
		{"fail/token-unreachable-issuer", []string{"token", "--issuer", "http://127.0.0.1:1", "--client-id", "a", "--key", key}, "no RFC 8414 metadata"},
		{"fail/token-invalid-client", []string{"token", "--issuer", srv.URL, "--client-id", "agent", "--client-secret", "wrong", "--key", key}, "answered 401 invalid_client"},
		{"fail/token-invalid-scope", []string{"token", "--issuer", srv.URL, "--client-id", "agent", "--client-secret", "agent-secret", "--key", key, "--scope", "admin"}, "answered 400 invalid_scope"},
		{"fail/check-config-missing", []string{"check-config", "--config", filepath.Join(dir, "none.yaml")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runCLI(t, tc.args...)
			if err == nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg+stderr, tc.want) {
				t.Fatalf("got %q (stderr %q), want one line containing %q", msg, stderr, tc.want)
			}
			if strings.Contains(stderr, "goroutine ") {
				t.Fatalf("stack trace on stderr: %s", stderr)
			}
		})
	}
	t.Run("ok/token", func(t *testing.T) {
		out, _, err := runCLI(t, "token", "--issuer", srv.URL, "--client-id", "agent", "--client-secret", "agent-secret", "--key", key)
		if err != nil || !strings.Contains(out, `"token_type": "DPoP"`) || !strings.Contains(out, `"access_token"`) {
			t.Fatalf("got %q, %v; want the token response as JSON", out, err)
		}
	})
}

// newDevIssuer runs a devauth server on httptest, with the client "agent".
func newDevIssuer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	as, err := devauth.New(devauth.Options{Issuer: "http://" + srv.Listener.Addr().String(), Audience: "https://api.example.com",
		Clients: []devauth.Client{{ID: "agent", Secret: "agent-secret", Scope: "tools:call"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = as
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("issuers:\n  - issuer: https://auth.example.com\n    audiences: [api]\nroutes:\n  - name: a\n    path_prefix: /a\n    upstream: http://127.0.0.1:9000\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("server:\n  lisen: x\nroutes:\n  - name: a\n    path_prefix: a\n    upstream: ftp://x\n"), 0o600)
	out, _, err := runCLI(t, "check-config", "--config", good)
	if err != nil || !strings.Contains(out, "ok (1 routes, 1 issuers") {
		t.Fatalf("good file: got %q, %v", out, err)
	}
	_, stderr, err := runCLI(t, "check-config", "--config", bad)
	if err == nil {
		t.Fatalf("bad file: got no error")
	}
	for _, want := range []string{"bad.yaml:2: server.lisen: unknown key", "bad.yaml:5: routes[0].path_prefix", "bad.yaml:6: routes[0].upstream"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("got %q, want a line with %q", stderr, want)
		}
	}
}
