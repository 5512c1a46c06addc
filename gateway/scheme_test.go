package gateway

import (
	"strings"
	"testing"
)

// TestUnsupportedScheme: a request that authenticates with a scheme other
// than DPoP or Bearer carries no access token, so it is answered as one
// without any (RFC 6750 §3: "If the protected resource request does not
// include authentication credentials or does not contain an access token
// that enables access to the protected resource, the resource server MUST
// include the HTTP WWW-Authenticate response header field"; §3.1: a client
// that "attempted using an unsupported authentication method" gets a
// challenge without an error code). An Authorization value whose scheme is
// not even a token stays malformed (400).
func TestUnsupportedScheme(t *testing.T) {
	e := newEnv(t, "")
	for _, tc := range []struct {
		name, path, authz string
		status            int
		bearerToo         bool
	}{
		{"fail/basic-on-required-route-gets-challenge", "/tools/x", "Basic dXNlcjpwYXNz", 401, false},
		{"fail/negotiate-on-required-route-gets-challenge", "/tools/x", "Negotiate YIIB", 401, false},
		{"fail/basic-on-optional-route-gets-challenge", "/public/x", "Basic dXNlcjpwYXNz", 401, true},
		{"fail/scheme-alone-gets-challenge", "/tools/x", "Basic", 401, false},
		{"fail/tab-after-scheme-is-malformed", "/tools/x", "DPoP\tabc", 400, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(e.req("GET", tc.path, "Authorization", tc.authz))
			ch := res.header.Values("WWW-Authenticate")
			if res.status != tc.status {
				t.Fatalf("got %d %q %q, want %d", res.status, res.err.Error, ch, tc.status)
			}
			if tc.status == 400 {
				if res.err.Error != "invalid_request" {
					t.Fatalf("got %q, want invalid_request", res.err.Error)
				}
				return
			}
			joined := strings.Join(ch, " | ")
			if res.err.Error != "invalid_token" || !strings.Contains(joined, `DPoP algs="`) ||
				strings.Contains(joined, "error=") || !strings.Contains(joined, "resource_metadata=") {
				t.Fatalf("got %q with WWW-Authenticate %q, want invalid_token and a DPoP challenge without error", res.err.Error, joined)
			}
			if tc.bearerToo != strings.HasPrefix(joined, "Bearer ") {
				t.Fatalf("got WWW-Authenticate %q, want a Bearer challenge first: %v", joined, tc.bearerToo)
			}
		})
	}
}
