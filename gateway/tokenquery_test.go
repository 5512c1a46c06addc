package gateway

import (
	"strings"
	"testing"
)

// TestTokenInQueryNameVariants: spec §3.3, "Tokens in the query string or
// form body are refused", under every name an upstream framework reads as
// access_token: ASP.NET Core's Request.Query ignores case (the SignalR
// access_token pattern), PHP turns '.', ' ' and '[' in a name into '_'.
func TestTokenInQueryNameVariants(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	for _, name := range []string{"ACCESS_TOKEN", "Access_Token", "access.token", "access+token", "access%20token", "+access_token", "access[token", "acce%C5%BFs_token"} {
		t.Run(name, func(t *testing.T) {
			res := e.do(e.req("GET", "/public/x?"+name+"="+good))
			if res.status != 400 || res.err.Error != "invalid_request" {
				q, _, _ := strings.Cut(res.echo.Query, "=")
				t.Errorf("?%s=<token>: got %d, want 400 invalid_request; the upstream saw %q", name, res.status, q)
			}
		})
	}
}

func TestHoldsToken(t *testing.T) {
	for q, want := range map[string]bool{
		"access_token=x":        true,
		"a=1&ACCESS_TOKEN=x":    true,
		"a=1;access.token=x":    true,
		"access%5Ftoken":        true,
		"%61ccess_token=x&b=%z": true,
		"access_token=":         true,
		"  access_token=x":      true,
		"access_token[]=x":      true,
		"access_token[0]=x":     true,
		"access[token=x":        true,
		"[access_token]=x":      true,
		"access_token%00x=1":    true,
		"access[token]=x":       false,
		"accesstoken=x":         false,
		"my_access_token=x":     false,
		"access_token_2=x":      false,
		"access__token=x":       false,
		"q=access_token":        false,
		"a=100%&b=access":       false,
		"":                      false,
	} {
		if got := holdsToken(q); got != want {
			t.Errorf("holdsToken(%q) = %v, want %v", q, got, want)
		}
	}
}
