package gateway

import (
	"net/http"
	"testing"
)

// TestHTUClientSpellings: a proof's htu as real clients write it for a
// path holding characters RFC 3986 does not allow raw. WHATWG URL clients
// (fetch, the dpop npm package: htu = url.origin + url.pathname) leave
// '[', ']', '|' and '^' raw in the path they send and in htu; Go's own
// client sends '[' and ']' raw; a client building htu from the URL it was
// given may leave a character raw that its HTTP stack percent-encodes on
// the wire. Each names the request the gateway received, and is accepted.
func TestHTUClientSpellings(t *testing.T) {
	e := newEnv(t, "")
	token := e.token(nil)
	for _, tc := range []struct {
		name string
		wire string // the request-target as sent
		htu  string // the path in the proof's htu
	}{
		{"ok/plain", "/tools/x", "/tools/x"},
		{"ok/brackets-raw", "/tools/items[0]", "/tools/items[0]"},
		{"ok/brackets-raw-htu-encoded", "/tools/items[0]", "/tools/items%5B0%5D"},
		{"ok/pipe-raw", "/tools/a|b", "/tools/a|b"},
		{"ok/pipe-encoded-on-the-wire", "/tools/a%7Cb", "/tools/a|b"},
		{"ok/caret-raw", "/tools/a^b", "/tools/a^b"},
		{"ok/utf8-encoded-on-the-wire", "/tools/caf%C3%A9", "/tools/café"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.req("GET", "/tools/x")
			r.URL.Opaque = tc.wire // sent as is
			proof, err := e.key.Proof("GET", e.srv.URL+tc.htu, token, "", e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Authorization", "DPoP "+token)
			r.Header.Set("DPoP", proof)
			res := e.do(r)
			if res.status != http.StatusOK {
				t.Fatalf("got %d %s (%s), want 200", res.status, res.err.Error, res.err.Description)
			}
		})
	}
}
