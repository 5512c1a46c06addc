// Package config reads dpopgate's YAML configuration (spec section 2).
//
// Parse runs four steps, in this order:
//
//  1. a strict decode: unknown keys, wrong types, bad durations, rates and
//     CIDRs are errors, each with its key path and line;
//  2. environment overrides: a non-empty DPOPGATE_* variable replaces the
//     key it names (see the env tags below);
//  3. defaults: a key absent from the file (or written as null) takes its
//     default; a key written in the file keeps its value, so
//     "clock_skew: 0s" means no skew and "cache_ttl: 0s" disables caching;
//  4. Validate, which reports every remaining problem at once.
//
// Problems come back joined (errors.Join), one per line, in file order:
//
//	gateway.yaml:14: routes[1].upstream: "ftp://x" is not an absolute http or https URL
//
// Each is an *Error. A Config returned without error is ready to use:
// durations, rates and CIDRs are parsed, defaults are filled in, and every
// reference (route to issuer, route to tier, file paths) resolves. Treat it
// as read-only: readers may share it across goroutines, nobody may modify it.
package config

// Config is the whole gateway configuration. The zero Config is not valid
// on its own; Parse an empty file to get every default.
type Config struct {
	Server      Server      `yaml:"server" json:"server"`
	Log         Log         `yaml:"log" json:"log"`
	Issuers     []Issuer    `yaml:"issuers" json:"issuers"`
	DPoP        DPoP        `yaml:"dpop" json:"dpop"`
	Replay      Replay      `yaml:"replay" json:"replay"`
	Redis       Redis       `yaml:"redis" json:"redis"`
	RateLimits  RateLimits  `yaml:"rate_limits" json:"rate_limits"`
	ForwardAuth ForwardAuth `yaml:"forward_auth" json:"forward_auth"`
	Routes      []Route     `yaml:"routes" json:"routes"`

	src *source // where each key came from; nil for a Config built in Go
}

// AdminOff as server.admin_listen disables the admin listener.
const AdminOff = "off"

// Server is the gateway listener and the admin listener.
type Server struct {
	// Listen is the gateway's host:port. Default ":8080".
	Listen string `yaml:"listen" json:"listen" env:"LISTEN"`
	// AdminListen is the host:port of /healthz, /readyz and /metrics, or
	// AdminOff. Default "127.0.0.1:9090".
	AdminListen string `yaml:"admin_listen" json:"admin_listen" env:"ADMIN_LISTEN"`
	// PublicURL is the external origin ("https://api.example.com") used to
	// rebuild a DPoP proof's htu behind a proxy. Optional; Parse removes a
	// trailing slash, so PublicURL+path is a URL.
	PublicURL string `yaml:"public_url" json:"public_url"`
	// TrustedProxies are the peers whose X-Forwarded-* headers are believed.
	TrustedProxies []Prefix `yaml:"trusted_proxies" json:"trusted_proxies"`
	// TLS, when both files are set, makes Listen serve HTTPS.
	TLS TLS `yaml:"tls" json:"tls"`

	ReadHeaderTimeout Duration `yaml:"read_header_timeout" json:"read_header_timeout"` // default 10s
	ReadTimeout       Duration `yaml:"read_timeout" json:"read_timeout"`               // default 60s
	IdleTimeout       Duration `yaml:"idle_timeout" json:"idle_timeout"`               // default 120s
	// MaxHeaderBytes caps the request header block; 4096..1048576, default 32768.
	MaxHeaderBytes int `yaml:"max_header_bytes" json:"max_header_bytes"`
	// MaxCredentialBytes caps each Authorization and DPoP header value;
	// 1024..65536 and at most MaxHeaderBytes, default 8192.
	MaxCredentialBytes int `yaml:"max_credential_bytes" json:"max_credential_bytes"`
	// ShutdownGrace is how long SIGTERM waits for in-flight requests. Default 30s.
	ShutdownGrace Duration `yaml:"shutdown_grace" json:"shutdown_grace"`
}

// AdminEnabled reports whether the admin listener should run.
func (s Server) AdminEnabled() bool { return s.AdminListen != AdminOff }

// TLS names a PEM certificate chain and its key. Both or neither.
type TLS struct {
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// Enabled reports whether TLS files are configured.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Log configures the log/slog handler.
type Log struct {
	// Level is debug, info, warn or error; Parse lower-cases it. Default info.
	Level string `yaml:"level" json:"level" env:"LOG_LEVEL"`
	// Format is json or text. Default json.
	Format string `yaml:"format" json:"format"`
}

// Issuer is one trusted authorization server (RFC 8414) and how its JWT
// access tokens (RFC 9068) are checked.
type Issuer struct {
	// Issuer must equal a token's iss exactly: an absolute http(s) URL with
	// no query or fragment, unique across issuers. Required.
	Issuer string `yaml:"issuer" json:"issuer"`
	// JWKSURI, when empty, is discovered via RFC 8414, then OIDC discovery.
	JWKSURI string `yaml:"jwks_uri" json:"jwks_uri"`
	// Audiences: a token's aud must contain one of these. At least one.
	Audiences []string `yaml:"audiences" json:"audiences"`
	// Algorithms a token may be signed with; asymmetric only.
	// Default [RS256, ES256, PS256, EdDSA].
	Algorithms []string `yaml:"algorithms" json:"algorithms"`
	// RequireTyp demands typ "at+jwt" (RFC 9068 section 4). Default true;
	// read it with TypRequired.
	RequireTyp *bool `yaml:"require_typ" json:"require_typ"`
	// RefreshInterval is the scheduled JWKS refresh. Default 15m.
	RefreshInterval Duration `yaml:"refresh_interval" json:"refresh_interval"`
	// MinRefreshInterval spaces refreshes caused by an unknown kid; at most
	// RefreshInterval. Default 5s.
	MinRefreshInterval Duration `yaml:"min_refresh_interval" json:"min_refresh_interval"`
	// Introspection, when set, enables RFC 7662 for this issuer.
	Introspection *Introspection `yaml:"introspection" json:"introspection"`
}

// TypRequired reports whether tokens must carry typ "at+jwt"; true unless
// require_typ is false.
func (i Issuer) TypRequired() bool { return i.RequireTyp == nil || *i.RequireTyp }

// Introspection is how the gateway calls an issuer's RFC 7662 endpoint.
// The client authenticates with a secret (client_secret, or
// client_secret_env naming the variable that holds it) or with
// private_key_jwt (private_key_file), never both.
type Introspection struct {
	// Endpoint, when empty, comes from the issuer's metadata.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	ClientID string `yaml:"client_id" json:"client_id"` // required
	// ClientSecret is the secret itself; after Parse it also holds the value
	// read from ClientSecretEnv.
	ClientSecret string `yaml:"client_secret" json:"client_secret"`
	// ClientSecretEnv names the environment variable Parse reads the secret
	// from; the variable must be non-empty.
	ClientSecretEnv string `yaml:"client_secret_env" json:"client_secret_env"`
	// PrivateKeyFile is a private JWK for private_key_jwt (RFC 7523).
	PrivateKeyFile   string   `yaml:"private_key_file" json:"private_key_file"`
	CacheTTL         Duration `yaml:"cache_ttl" json:"cache_ttl"`                   // default 60s; 0 disables
	NegativeCacheTTL Duration `yaml:"negative_cache_ttl" json:"negative_cache_ttl"` // default 10s; 0 disables
	Timeout          Duration `yaml:"timeout" json:"timeout"`                       // per call, default 5s
}

// DPoP is how proofs are checked (RFC 9449 section 4.3).
type DPoP struct {
	MaxAge    Duration `yaml:"max_age" json:"max_age"`       // iat window, default 60s
	ClockSkew Duration `yaml:"clock_skew" json:"clock_skew"` // default 5s
	// Algorithms a proof may use; asymmetric only.
	// Default [ES256, ES384, EdDSA, RS256, PS256].
	Algorithms []string `yaml:"algorithms" json:"algorithms"`
	Nonce      Nonce    `yaml:"nonce" json:"nonce"`
}

// Nonce configures stateless HMAC server nonces (RFC 9449 section 9).
type Nonce struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Secret is the HMAC key: at least 32 bytes when Enabled.
	Secret   string   `yaml:"secret" json:"secret" env:"DPOP_NONCE_SECRET"`
	Lifetime Duration `yaml:"lifetime" json:"lifetime"` // default 5m
}

// Backends and failure policies, as written in the file.
const (
	BackendMemory = "memory" // replay.backend
	BackendLocal  = "local"  // rate_limits.backend
	BackendRedis  = "redis"  // replay.backend, rate_limits.backend

	FailClosed = "fail_closed" // replay.on_error, rate_limits.on_error
	FailOpen   = "fail_open"   // replay.on_error, rate_limits.on_error
	FailLocal  = "local"       // rate_limits.on_error: fall back to local buckets
)

// Replay configures the store of seen DPoP proof jti values.
type Replay struct {
	Backend    string `yaml:"backend" json:"backend"`         // memory (default) | redis
	OnError    string `yaml:"on_error" json:"on_error"`       // fail_closed (default) | fail_open
	MaxEntries int    `yaml:"max_entries" json:"max_entries"` // memory backend bound, default 1000000
}

// Redis modes.
const (
	RedisSingle   = "single"
	RedisCluster  = "cluster"
	RedisSentinel = "sentinel"
)

// Redis is the shared store for replay and rate-limit state. Either URL
// (one server) or Addrs (one server, a cluster, or sentinels) is used,
// never both. Username, Password and DB apply to Addrs; with URL, a
// non-empty Username or Password (typically from DPOPGATE_REDIS_PASSWORD)
// overrides the URL's, and DB must stay 0 (the URL's path is the
// database).
type Redis struct {
	URL        string   `yaml:"url" json:"url" env:"REDIS_URL"` // redis:// or rediss://
	Addrs      []string `yaml:"addrs" json:"addrs"`             // host:port each
	Mode       string   `yaml:"mode" json:"mode"`               // single (default) | cluster | sentinel
	MasterName string   `yaml:"master_name" json:"master_name"` // sentinel only, required there
	// The Sentinels' own credentials, when they ask for them (their
	// requirepass or an ACL user); sentinel only.
	SentinelUsername string   `yaml:"sentinel_username" json:"sentinel_username"`
	SentinelPassword string   `yaml:"sentinel_password" json:"sentinel_password" env:"REDIS_SENTINEL_PASSWORD"`
	Username         string   `yaml:"username" json:"username"` //
	Password         string   `yaml:"password" json:"password" env:"REDIS_PASSWORD"`
	DB               int      `yaml:"db" json:"db"`               // 0 in cluster mode
	Prefix           string   `yaml:"prefix" json:"prefix"`       // key prefix, default "dpopgate:"
	PoolSize         int      `yaml:"pool_size" json:"pool_size"` // 0: the library's default
	Timeout          Duration `yaml:"timeout" json:"timeout"`     // per call, default 200ms
	TLS              RedisTLS `yaml:"tls" json:"tls"`
}

// RedisTLS is TLS to Redis. A rediss:// url turns it on; with addrs,
// Enabled does. CAFile replaces the system's roots (a private CA);
// CertFile and KeyFile, both or neither, are a client certificate for a
// server that asks for one (tls-auth-clients). ServerName, if set, is the
// name checked in every server's certificate instead of the host dialled.
type RedisTLS struct {
	Enabled  bool   `yaml:"enabled" json:"enabled"`     // addrs only: url says it with rediss://
	CAFile   string `yaml:"ca_file" json:"ca_file"`     // PEM CA certificates to trust
	CertFile string `yaml:"cert_file" json:"cert_file"` // PEM client certificate chain
	KeyFile  string `yaml:"key_file" json:"key_file"`   // PEM key of cert_file
	// ServerName is the name every server's certificate must carry, when
	// it is not the host dialled (Sentinel hands out IP addresses).
	ServerName string `yaml:"server_name" json:"server_name"`
}

// Built-in tier names; both always exist after Parse.
const (
	TierAnonymous = "anonymous" // callers without a token, keyed by client IP
	TierClient    = "client"    // any valid token, keyed by client_id
)

// RateLimits configures token buckets per (route, tier, key).
type RateLimits struct {
	Backend string `yaml:"backend" json:"backend"`   // local (default) | redis
	OnError string `yaml:"on_error" json:"on_error"` // redis down: local (default) | fail_open | fail_closed
	// TierClaim is the token claim naming a tier; "" disables it. Default "tier".
	TierClaim string `yaml:"tier_claim" json:"tier_claim"`
	// Tiers by name (^[a-z][a-z0-9_-]{0,31}$). The file's tiers are merged
	// over the defaults anonymous {60/m, burst 60}, client {600/m, burst
	// 600} and business {3000/m, burst 3000}.
	Tiers map[string]Tier `yaml:"tiers" json:"tiers"`
	// AnonymousIPCap, when set, caps anonymous calls per IP across all routes.
	AnonymousIPCap *Tier `yaml:"anonymous_ip_cap" json:"anonymous_ip_cap"`
	// AuthFailures budgets failed authentications per IP. Default {10/m, burst 10}.
	AuthFailures Tier `yaml:"auth_failures" json:"auth_failures"`
	// MaxKeys bounds the buckets held by the local backend. Default 1000000.
	MaxKeys int `yaml:"max_keys" json:"max_keys"`
}

// Tier is one token-bucket policy.
type Tier struct {
	Rate  Rate `yaml:"rate" json:"rate"`   // required
	Burst int  `yaml:"burst" json:"burst"` // bucket size, 1 to MaxCount; default Rate.Count
}

// ForwardAuth is the endpoint that ingress-nginx auth-url, Traefik
// ForwardAuth and Envoy ext_authz call (spec section 6).
type ForwardAuth struct {
	Enabled bool   `yaml:"enabled" json:"enabled"`
	Path    string `yaml:"path" json:"path"` // on the gateway listener, default "/auth"
}

// Route modes.
const (
	AuthNone     = "none"
	AuthOptional = "optional"
	AuthRequired = "required"

	DPoPRequired = "required" // Bearer is refused
	DPoPOptional = "optional" // unbound Bearer tokens are allowed
)

// Route sends requests matching Host, PathPrefix and Methods to Upstream.
// Among matching routes the longest PathPrefix wins.
type Route struct {
	// Name labels metrics and logs: ^[a-z0-9][a-z0-9_.-]{0,63}$, unique. Required.
	Name string `yaml:"name" json:"name"`
	// Host, when set, must equal the request's Host (lower-cased by Parse;
	// may include :port).
	Host       string   `yaml:"host" json:"host"`
	PathPrefix string   `yaml:"path_prefix" json:"path_prefix"` // starts with "/"; required
	Methods    []string `yaml:"methods" json:"methods"`         // upper-case; empty: all
	Upstream   string   `yaml:"upstream" json:"upstream"`       // absolute http(s) URL; required
	// StripPrefix removes PathPrefix before forwarding.
	StripPrefix bool   `yaml:"strip_prefix" json:"strip_prefix"`
	Auth        string `yaml:"auth" json:"auth"` // none | optional (default) | required
	DPoP        string `yaml:"dpop" json:"dpop"` // required (default) | optional
	// Scopes a token must all carry.
	Scopes []string `yaml:"scopes" json:"scopes"`
	// Introspect asks the issuer about every token (RFC 7662); some issuer
	// this route accepts must have an introspection block.
	Introspect bool `yaml:"introspect" json:"introspect"`
	// Issuers, when set, restricts the route to these configured issuers.
	Issuers []string `yaml:"issuers" json:"issuers"`
	// Resource overrides the RFC 9728 resource identifier for this route.
	Resource string `yaml:"resource" json:"resource"`
	// RateLimits overrides a tier's rate on this route; keys are tier names.
	RateLimits map[string]Rate `yaml:"rate_limits" json:"rate_limits"`
	// Timeout waits for the upstream's response headers; a stream may run
	// longer. Default 30s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	CORS    *CORS    `yaml:"cors" json:"cors"`
}

// CORS answers preflight requests for a route; a preflight never needs a token.
type CORS struct {
	AllowOrigins     []string `yaml:"allow_origins" json:"allow_origins"` // "*" or origins; at least one
	AllowMethods     []string `yaml:"allow_methods" json:"allow_methods"`
	AllowHeaders     []string `yaml:"allow_headers" json:"allow_headers"`
	ExposeHeaders    []string `yaml:"expose_headers" json:"expose_headers"`
	AllowCredentials bool     `yaml:"allow_credentials" json:"allow_credentials"` // not with "*"
	MaxAge           Duration `yaml:"max_age" json:"max_age"`                     // 0: no Access-Control-Max-Age
}
