package devauth_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/gateway/devauth"
	"github.com/dpopgate/dpopgate/gateway/dpopclient"
)

const audience = "https://api.example.com"

func start(t *testing.T) (*httptest.Server, *devauth.Server) {
	srv := httptest.NewUnstartedServer(nil)
	as, err := devauth.New(devauth.Options{
		Issuer: "http://" + srv.Listener.Addr().String(), Audience: audience,
		Clients: []devauth.Client{
			{ID: "agent", Secret: "s3cret", Scope: "tools:call listings:read"},
			{ID: "biz", Secret: "biz-secret", Scope: "tools:call", Tier: "business"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = as
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, as
}

type answer struct {
	status int
	body   map[string]any
}

// tokenRequest posts a client_credentials request; with key set, a proof
// goes along (through the dpopclient transport).
func tokenRequest(t *testing.T, srv *httptest.Server, key *dpopclient.Key, form url.Values, user, pass string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	c := http.DefaultClient
	if key != nil {
		c = &http.Client{Transport: &dpopclient.Transport{Key: key}}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return answer{resp.StatusCode, m}
}

func TestTokenEndpoint(t *testing.T) {
	srv, _ := start(t)
	key, _ := dpopclient.GenerateKey("ES256")
	cc := url.Values{"grant_type": {"client_credentials"}}
	for _, tc := range []struct {
		name       string
		key        *dpopclient.Key
		form       url.Values
		user, pass string
		status     int
		code       string
	}{
		{"ok/basic", key, cc, "agent", "s3cret", 200, ""},
		{"ok/post", key, url.Values{"grant_type": {"client_credentials"}, "client_id": {"agent"}, "client_secret": {"s3cret"}, "scope": {"tools:call"}}, "", "", 200, ""},
		{"fail/no-proof", nil, cc, "agent", "s3cret", 400, "invalid_dpop_proof"},
		{"fail/wrong-secret", key, cc, "agent", "nope", 401, "invalid_client"},
		{"fail/unknown-client", key, cc, "stranger", "x", 401, "invalid_client"},
		{"fail/grant-type", key, url.Values{"grant_type": {"password"}}, "agent", "s3cret", 400, "unsupported_grant_type"},
		{"fail/scope", key, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, "agent", "s3cret", 400, "invalid_scope"},
		{"fail/resource", key, url.Values{"grant_type": {"client_credentials"}, "resource": {"https://evil.example.com"}}, "agent", "s3cret", 400, "invalid_target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tokenRequest(t, srv, tc.key, tc.form, tc.user, tc.pass)
			if a.status != tc.status || (tc.code != "" && a.body["error"] != tc.code) {
				t.Fatalf("got %d %v, want %d %s", a.status, a.body, tc.status, tc.code)
			}
			if tc.code == "" && a.body["token_type"] != "DPoP" {
				t.Fatalf("got token_type %v, want DPoP", a.body["token_type"])
			}
		})
	}
}

// TestTokensVerify: the tokens verify at a resource server, bound to the
// proof key, with the client's tier.
func TestTokensVerify(t *testing.T) {
	srv, _ := start(t)
	key, _ := dpopclient.GenerateKey("EdDSA")
	a := tokenRequest(t, srv, key, url.Values{"grant_type": {"client_credentials"}}, "biz", "biz-secret")
	tok, _ := a.body["access_token"].(string)
	v, err := auth.New(auth.Options{
		Issuers:        []auth.IssuerOptions{{Issuer: srv.URL, Audiences: []string{audience}, Algorithms: []string{"ES256"}, RequireTyp: true}},
		DPoPAlgorithms: dpopclient.Algorithms, MaxAge: time.Minute, ClockSkew: 5 * time.Second, TierClaim: "tier",
	})
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := key.Proof("GET", audience+"/tools/x", tok, "", time.Now())
	res, err := v.Verify(context.Background(), auth.Request{Method: "GET", URL: audience + "/tools/x",
		Authorization: []string{"DPoP " + tok}, DPoP: []string{proof}, Now: time.Now()})
	if err != nil {
		t.Fatalf("got %v, want the token accepted", err)
	}
	p := res.Principal
	if p.ClientID != "biz" || p.Tier != "business" || p.JKT != key.Thumbprint() || p.Scope() != "tools:call" {
		t.Fatalf("got %+v", p)
	}
}

func TestRegistration(t *testing.T) {
	srv, _ := start(t)
	post := func(body string) answer {
		resp, err := http.Post(srv.URL+"/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return answer{resp.StatusCode, m}
	}
	a := post(`{"client_name":"a","token_endpoint_auth_method":"none","grant_types":["client_credentials"],"scope":"listings:read"}`)
	id, _ := a.body["client_id"].(string)
	if a.status != 201 || id == "" || a.body["client_secret"] != nil || a.body["scope"] != "listings:read" {
		t.Fatalf("got %d %v, want a public client", a.status, a.body)
	}
	key, _ := dpopclient.GenerateKey("ES256")
	tok := tokenRequest(t, srv, key, url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}, "", "")
	if tok.status != 200 || tok.body["scope"] != "listings:read" {
		t.Fatalf("public client token: got %d %v", tok.status, tok.body)
	}
	if a := post(`{"grant_types":["authorization_code"]}`); a.status != 400 || a.body["error"] != "invalid_client_metadata" {
		t.Fatalf("bad grant type: got %d %v", a.status, a.body)
	}
	if a := post(`{"scope":"admin"}`); a.status != 400 {
		t.Fatalf("unknown scope: got %d %v", a.status, a.body)
	}
	if a := post(`{}`); a.status != 201 || a.body["client_secret"] == nil {
		t.Fatalf("default auth method: got %d %v, want a confidential client", a.status, a.body)
	}
}
