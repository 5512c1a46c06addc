package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// TestTokenInQueryFrameworkNames: names the gateway lets through that a
// named upstream framework reads as access_token (each checked against
// that framework):
//   - PHP ($_GET, $_POST, parse_str; 8.2): php_register_variable_ex takes
//     the name up to its first NUL (strlen), so access_token%00… is
//     $_GET['access_token'].
//   - Rack 2.x (Rails <= 7.0 params; 2.2.22): normalize_params reads the
//     key as /\A[\[\]]*([^\[\]]+)\]*/, so [access_token], access_token]
//     and ]access_token are params["access_token"], a string.
//   - qs (Express 4's default query parser and urlencoded({extended:
//     true}); qs 6.17.1, express 4.22.3): a root [access_token] is
//     unwrapped, so [access_token]=T is req.query.access_token === "T".
func TestTokenInQueryFrameworkNames(t *testing.T) {
	names := []string{
		"access_token%00",    // PHP
		"access_token%00x",   // PHP
		"[access_token]",     // Rack 2, qs
		"%5Baccess_token%5D", // Rack 2, qs
		"access_token]",      // Rack 2
		"]access_token",      // Rack 2
	}
	for _, name := range names {
		for _, q := range []string{name + "=T", "a=1&" + name + "=T"} {
			if !holdsToken(q) {
				t.Errorf("holdsToken(%q) = false: the upstream reads access_token", q)
			}
		}
	}
	// End to end, in the query and in a form body.
	e := newEnv(t, "")
	good := e.token(nil)
	for _, name := range names[:3] {
		if res := e.do(e.req("GET", "/public/x?"+name+"="+good)); res.status != 400 || res.err.Error != "invalid_request" {
			t.Errorf("?%s=<token>: got %d, want 400 invalid_request; the upstream saw query %.20q…", name, res.status, res.echo.Query)
		}
	}
	r, _ := http.NewRequest("POST", e.srv.URL+"/public/x", strings.NewReader("a=1&[access_token]="+good))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res := e.do(r); res.status != 400 || res.err.Error != "invalid_request" {
		t.Errorf("form [access_token]=<token>: got %d, want 400 invalid_request", res.status)
	}
}
