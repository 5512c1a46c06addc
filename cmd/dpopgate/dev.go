package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/template"
	"time"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway"
	"github.com/dpopgate/dpopgate/gateway/devauth"
)

// argv0 is how the program was invoked, to print commands that work.
var argv0 = "dpopgate"

// presetClients are the dev authorization server's clients; the secret of
// each is its id followed by "-secret".
var presetClients = []devauth.Client{
	{ID: "agent", Secret: "agent-secret", Scope: "tools:call listings:read"},
	{ID: "business-agent", Secret: "business-agent-secret", Scope: "tools:call listings:read mcp", Tier: "business"},
	{ID: "reader", Secret: "reader-secret", Scope: "listings:read"},
	{ID: "opaque-agent", Secret: "opaque-agent-secret", Scope: "tools:call listings:read", Opaque: true},
	// The gateway's own client, for introspection (RFC 7662).
	{ID: "gateway", Secret: "gateway-secret"},
}

// devConfig is the gateway config of `dpopgate dev`, parsed and validated
// like any file.
const devConfig = `
server:
  listen: {{.Listen}}
  admin_listen: {{.Admin}}
issuers:
  - issuer: {{.Issuer}}
    audiences: [{{.Gateway}}]
    algorithms: [ES256]
    min_refresh_interval: 1s
    introspection: {client_id: gateway, client_secret: gateway-secret, cache_ttl: 5s, negative_cache_ttl: 2s}
rate_limits:
  tiers:
    anonymous: {rate: 60/m, burst: 60}
    client: {rate: 600/m, burst: 600}
    business: {rate: 3000/m, burst: 3000}
routes:
  - name: public
    path_prefix: /public
    upstream: {{.Upstream}}
    auth: optional
    dpop: optional
  - name: tools
    path_prefix: /tools
    upstream: {{.Upstream}}
    auth: required
    scopes: [tools:call]
  - name: mcp
    path_prefix: /mcp
    upstream: {{.Upstream}}
    auth: required
    dpop: optional
    scopes: [mcp]
  - name: account
    path_prefix: /account
    upstream: {{.Upstream}}
    auth: required
    introspect: true
`

const devBanner = `
==============================================================================
  dpopgate dev -- FOR DEVELOPMENT ONLY
  An in-memory authorization server with preset clients and fixed secrets,
  an echo upstream, and the gateway on memory backends, all on loopback.
  Nothing here is fit for production.
==============================================================================

  gateway               {{.Gateway}}
    /public/...  anonymous (60/min per IP) or any token (600/min per client)
    /tools/...   DPoP-bound token with scope tools:call
    /mcp         token (DPoP or Bearer) with scope mcp
    /account/... DPoP-bound token, checked at the issuer on every call (introspection: revocation shows within 5s)
  authorization server  {{.Issuer}}   (RFC 8414 metadata, JWKS, token, RFC 7591 registration,
                        RFC 7662 introspection, RFC 7009 revocation)
  admin                 {{.AdminURL}}   (/healthz, /readyz, /metrics, /usage)

  preset clients (client_credentials; secret = id + "-secret"):
    agent            tier client    scopes: tools:call listings:read
    business-agent   tier business  scopes: tools:call listings:read mcp
    reader           tier client    scopes: listings:read
    opaque-agent     tier client    scopes: tools:call listings:read   (opaque tokens: introspected)

Try it, in another terminal:

# -- begin commands --
export GW={{.Gateway}} ISSUER={{.Issuer}}
{{.Self}} keygen > agent.jwk
CLIENT_ID=$({{.Self}} register --issuer $ISSUER --name my-agent --scope tools:call --raw)
TOKEN=$({{.Self}} token --issuer $ISSUER --client-id $CLIENT_ID --key agent.jwk --raw)
PROOF=$({{.Self}} proof --key agent.jwk --method GET --url $GW/tools/hello --token $TOKEN)
curl -si -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" $GW/tools/hello
curl -si -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" $GW/tools/hello
curl -si $GW/public/hello
# -- end commands --

  1. a DPoP key pair; 2. a public client, registered; 3. a token bound to the key;
  4. a proof for one request; 5. the call: 200, the upstream echoes who you are;
  6. the same proof again: 401 invalid_dpop_proof; 7. anonymous: 200, with the
  anonymous budget in X-RateLimit-*. Ctrl-C stops everything.
`

// dev runs a development authorization server, an echo upstream and the
// gateway in front of it, in one process, on loopback.
func dev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway `address` (loopback only)")
	issuerListen := fs.String("issuer-listen", "127.0.0.1:8081", "authorization server `address` (loopback only)")
	adminListen := fs.String("admin-listen", "127.0.0.1:9090", "admin `address` (loopback only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	listenLoopback := func(addr string) (net.Listener, error) {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("dev listens on loopback only, not %q", addr)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%w (pick another with --listen, --issuer-listen, --admin-listen)", err)
		}
		lns = append(lns, ln)
		return ln, nil
	}
	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	asLn, err := listenLoopback(*issuerListen)
	if err != nil {
		return err
	}
	adminLn, err := listenLoopback(*adminListen)
	if err != nil {
		return err
	}
	upLn, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		return err
	}
	vals := map[string]string{
		"Listen":   ln.Addr().String(),
		"Admin":    adminLn.Addr().String(),
		"Gateway":  "http://" + ln.Addr().String(),
		"Issuer":   "http://" + asLn.Addr().String(),
		"Upstream": "http://" + upLn.Addr().String(),
		"AdminURL": "http://" + adminLn.Addr().String(),
		"Self":     selfCommand(),
	}
	as, err := devauth.New(devauth.Options{Issuer: vals["Issuer"], Audience: vals["Gateway"], Clients: presetClients})
	if err != nil {
		return err
	}
	cfg, err := config.Parse("dev (built in)", []byte(render(devConfig, vals)), nil)
	if err != nil {
		return fmt.Errorf("built-in dev config: %w", err)
	}
	log := newLogger(config.Log{Level: "info", Format: "text"}, stderr)
	gw, err := gateway.New(cfg, gateway.Options{Logger: log})
	if err != nil {
		return err
	}
	side := []*http.Server{
		{Handler: as, ReadHeaderTimeout: 5 * time.Second},
		{Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 5 * time.Second},
	}
	errc := make(chan error, 2)
	go func() { errc <- side[0].Serve(asLn) }()
	go func() { errc <- side[1].Serve(upLn) }()
	defer func() {
		for _, s := range side {
			s.Close()
		}
	}()
	fmt.Fprint(stdout, render(devBanner, vals))
	done := make(chan error, 1)
	go func() { done <- runServers(ctx, cfg, gw, log, ln, adminLn) }()
	select {
	case err := <-done:
		return err
	case err := <-errc:
		return fmt.Errorf("dev server stopped: %w", err)
	}
}

// selfCommand is the command that runs this program again: the invoked path
// when it has one (./dpopgate), "go run ./cmd/dpopgate" under go run.
func selfCommand() string {
	if strings.Contains(argv0, "go-build") {
		return "go run ./cmd/dpopgate"
	}
	return argv0
}

func render(text string, vals map[string]string) string {
	var b strings.Builder
	if err := template.Must(template.New("").Parse(text)).Execute(&b, vals); err != nil {
		panic(err) // the templates are constants
	}
	return b.String()
}

// echo is the dev upstream: it answers with the request it got and the
// identity the gateway forwarded.
func echo(w http.ResponseWriter, r *http.Request) {
	identity := map[string]string{}
	for _, h := range []string{"Subject", "Client-Id", "Scope", "Tier", "Issuer", "Jkt"} {
		if v := r.Header.Get("X-Auth-" + h); v != "" {
			identity[strings.ToLower(strings.ReplaceAll(h, "-", "_"))] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"upstream":              "dpopgate dev echo",
		"method":                r.Method,
		"path":                  r.URL.Path,
		"identity":              identity,
		"credentials_forwarded": r.Header.Get("Authorization") != "" || r.Header.Get("DPoP") != "",
	})
}
