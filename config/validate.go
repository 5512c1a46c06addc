package config

import (
	"crypto/tls"
	"errors"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Validate reports every problem in c, each an *Error with its key path
// (and, for a parsed Config, its file and line), joined in file order; nil
// when c is ready to use. It checks that the files c names exist, and
// never modifies c.
func (c *Config) Validate() error {
	if c == nil {
		return errors.New("config: Validate called on a nil *Config")
	}
	return join(c.locate(c.check()))
}

func (c *Config) locate(ps []problem) []*Error {
	errs := make([]*Error, len(ps))
	for i, p := range ps {
		errs[i] = c.src.locate(p)
	}
	return errs
}

// check lists c's problems section by section.
func (c *Config) check() []problem {
	var p problems
	c.Server.check(&p)
	oneOf(&p, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(&p, "log.format", c.Log.Format, "json", "text")
	c.checkIssuers(&p)
	c.DPoP.check(&p)
	oneOf(&p, "replay.backend", c.Replay.Backend, BackendMemory, BackendRedis)
	oneOf(&p, "replay.on_error", c.Replay.OnError, FailClosed, FailOpen)
	atLeast(&p, "replay.max_entries", c.Replay.MaxEntries, 1)
	c.checkRedis(&p)
	c.RateLimits.check(&p)
	c.checkRoutes(&p)
	return p
}

func (s *Server) check(p *problems) {
	if !hostPort(s.Listen, false) {
		p.add("server.listen", `%q is not host:port, such as ":8080" or "127.0.0.1:8080"`, s.Listen)
	}
	switch {
	case s.AdminListen == AdminOff:
	case !hostPort(s.AdminListen, false):
		p.add("server.admin_listen", `%q is not host:port, such as "127.0.0.1:9090", or "off"`, s.AdminListen)
	case sameAddress(s.Listen, s.AdminListen):
		p.add("server.admin_listen", "%q is the same address as server.listen (%q)", s.AdminListen, s.Listen)
	}
	if s.PublicURL != "" {
		if u, ok := httpURL(p, "server.public_url", s.PublicURL, false); ok && u.Path != "" && u.Path != "/" {
			p.add("server.public_url", "%q must be an origin such as https://api.example.com, without a path", s.PublicURL)
		}
	}
	for i, pr := range s.TrustedProxies {
		if !pr.IsValid() {
			p.add(item("server.trusted_proxies", i), "is not an IP address or CIDR")
		}
	}
	certPair(p, "server.tls", s.TLS.CertFile, s.TLS.KeyFile)
	positive(p, "server.read_header_timeout", s.ReadHeaderTimeout)
	positive(p, "server.read_timeout", s.ReadTimeout)
	positive(p, "server.idle_timeout", s.IdleTimeout)
	between(p, "server.max_header_bytes", s.MaxHeaderBytes, 4<<10, 1<<20)
	between(p, "server.max_credential_bytes", s.MaxCredentialBytes, 1<<10, 64<<10)
	if s.MaxCredentialBytes > s.MaxHeaderBytes && s.MaxHeaderBytes >= 4<<10 {
		p.add("server.max_credential_bytes", "%d is more than server.max_header_bytes (%d); such a header could never arrive",
			s.MaxCredentialBytes, s.MaxHeaderBytes)
	}
	notNegative(p, "server.shutdown_grace", s.ShutdownGrace)
}

func (c *Config) checkIssuers(p *problems) {
	first := map[string]int{}
	for i := range c.Issuers {
		iss, path := &c.Issuers[i], item("issuers", i)
		if required(p, path+".issuer", iss.Issuer) {
			httpURL(p, path+".issuer", iss.Issuer, false)
			if j, dup := first[iss.Issuer]; dup {
				p.add(path+".issuer", "%q is already issuers[%d]", iss.Issuer, j)
			} else {
				first[iss.Issuer] = i
			}
		}
		if iss.JWKSURI != "" {
			httpURL(p, path+".jwks_uri", iss.JWKSURI, true)
		}
		if len(iss.Audiences) == 0 {
			p.add(path+".audiences", "needs at least one audience")
		}
		for j, a := range iss.Audiences {
			required(p, item(path+".audiences", j), a)
		}
		algorithms(p, path+".algorithms", iss.Algorithms)
		positive(p, path+".refresh_interval", iss.RefreshInterval)
		positive(p, path+".min_refresh_interval", iss.MinRefreshInterval)
		if iss.MinRefreshInterval > iss.RefreshInterval {
			p.add(path+".min_refresh_interval", "%s is longer than refresh_interval (%s)", iss.MinRefreshInterval, iss.RefreshInterval)
		}
		if iss.Introspection != nil {
			iss.Introspection.check(p, path+".introspection")
		}
	}
}

func (in *Introspection) check(p *problems, path string) {
	if in.Endpoint != "" {
		httpURL(p, path+".endpoint", in.Endpoint, true)
	}
	required(p, path+".client_id", in.ClientID)
	if in.ClientSecretEnv != "" {
		if envName(in.ClientSecretEnv) != nil {
			// Not quoted: it may be the secret itself, written here.
			p.add(path+".client_secret_env", "is not an environment variable name (letters, digits and _); it names the variable that holds the secret")
		} else if in.ClientSecret == "" {
			p.add(path+".client_secret_env", "environment variable %s is empty or unset", in.ClientSecretEnv)
		}
	}
	secret := in.ClientSecret != "" || in.ClientSecretEnv != ""
	switch {
	case in.PrivateKeyFile != "" && secret:
		p.add(path+".private_key_file", "cannot be used together with a client secret; choose one")
	case in.PrivateKeyFile != "":
		file(p, path+".private_key_file", in.PrivateKeyFile)
	case !secret:
		p.add(path+".client_secret", "is required: set client_secret, client_secret_env or private_key_file")
	}
	notNegative(p, path+".cache_ttl", in.CacheTTL)
	notNegative(p, path+".negative_cache_ttl", in.NegativeCacheTTL)
	positive(p, path+".timeout", in.Timeout)
}

// minNonceSecret is the shortest HMAC key accepted for nonces: 256 bits,
// the output size of HMAC-SHA256 (RFC 2104 section 3).
const minNonceSecret = 32

func (d *DPoP) check(p *problems) {
	positive(p, "dpop.max_age", d.MaxAge)
	notNegative(p, "dpop.clock_skew", d.ClockSkew)
	algorithms(p, "dpop.algorithms", d.Algorithms)
	if d.Nonce.Enabled && required(p, "dpop.nonce.secret", d.Nonce.Secret) && len(d.Nonce.Secret) < minNonceSecret {
		p.add("dpop.nonce.secret", "must be at least %d bytes, got %d", minNonceSecret, len(d.Nonce.Secret))
	}
	positive(p, "dpop.nonce.lifetime", d.Nonce.Lifetime)
}

func (c *Config) checkRedis(p *problems) {
	r := &c.Redis
	var users []string
	if c.Replay.Backend == BackendRedis {
		users = append(users, "replay.backend")
	}
	if c.RateLimits.Backend == BackendRedis {
		users = append(users, "rate_limits.backend")
	}
	switch {
	case r.URL != "" && len(r.Addrs) > 0:
		p.add("redis.addrs", "cannot be used together with redis.url")
	case r.URL == "" && len(r.Addrs) == 0 && len(users) > 0:
		verb := map[bool]string{false: "is", true: "are"}[len(users) > 1]
		p.add("redis.url", "is required (or redis.addrs) when %s %s redis", strings.Join(users, " and "), verb)
	}
	if r.Password == "" && !urlHasPassword(r.URL) {
		switch user := urlUser(r.URL); {
		case r.Username != "" && r.Username != "default":
			p.add("redis.username", "needs a password (redis.password or DPOPGATE_REDIS_PASSWORD): go-redis sends no username without a password, and the connection is default's")
		case r.Username == "" && user != "" && user != "default":
			// Not named: redis://SECRET@host is a password that lost its
			// colon more often than a user.
			p.add("redis.url", "names a user but no password (a password alone is written redis://:PASSWORD@host; a user's, in the URL, redis.password or DPOPGATE_REDIS_PASSWORD): go-redis sends no username without a password, and the connection is default's")
		}
	}
	if r.URL != "" {
		redisURL(p, r.URL)
		if r.DB != 0 {
			p.add("redis.db", "is for redis.addrs; with redis.url, the database is the URL's path, as in redis://host:6379/2")
		}
	}
	for i, a := range r.Addrs {
		switch {
		case hostPort(a, true):
		case strings.Contains(a, "@"):
			// A URL with its password, most likely.
			p.add(item("redis.addrs", i), `the address (not shown: it may hold a password) is not host:port, such as "redis:6379"; credentials go in redis.username and redis.password`)
		default:
			p.add(item("redis.addrs", i), `%q is not host:port, such as "redis:6379"`, a)
		}
	}
	r.checkTLS(p)
	oneOf(p, "redis.mode", r.Mode, "", RedisSingle, RedisCluster, RedisSentinel)
	switch r.Mode {
	case RedisCluster, RedisSentinel:
		if r.URL != "" {
			p.add("redis.mode", "%s needs redis.addrs; redis.url is for a single server", r.Mode)
		}
	default:
		if len(r.Addrs) > 1 {
			p.add("redis.addrs", "has %d addresses; a single server takes one (set redis.mode to cluster or sentinel)", len(r.Addrs))
		}
	}
	if r.Mode == RedisSentinel {
		required(p, "redis.master_name", r.MasterName)
		if r.SentinelUsername != "" && r.SentinelPassword == "" {
			p.add("redis.sentinel_username", "needs redis.sentinel_password (or DPOPGATE_REDIS_SENTINEL_PASSWORD): go-redis sends no username without a password")
		}
	} else {
		for _, k := range []struct{ path, value string }{
			{"redis.master_name", r.MasterName}, {"redis.sentinel_username", r.SentinelUsername}, {"redis.sentinel_password", r.SentinelPassword},
		} {
			if k.value != "" {
				p.add(k.path, "is only used with redis.mode sentinel")
			}
		}
	}
	if r.Mode == RedisCluster && r.DB != 0 {
		p.add("redis.db", "must be 0 in cluster mode, got %d", r.DB)
	}
	atLeast(p, "redis.db", r.DB, 0)
	atLeast(p, "redis.pool_size", r.PoolSize, 0)
	positive(p, "redis.timeout", r.Timeout)
}

// checkTLS checks redis.tls: its files are there and read as what they
// should be, and TLS is on if they are to be used.
func (r Redis) checkTLS(p *problems) {
	t := r.TLS
	if t.Enabled && r.URL != "" {
		p.add("redis.tls.enabled", "is for redis.addrs; with redis.url, rediss:// turns TLS on")
	}
	if !r.tlsOn() && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "") {
		if r.URL != "" {
			p.add("redis.tls", "ca_file, cert_file, key_file and server_name need TLS: use a rediss:// url")
		} else {
			p.add("redis.tls", "ca_file, cert_file, key_file and server_name need TLS: set redis.tls.enabled")
		}
	}
	certPair(p, "redis.tls", t.CertFile, t.KeyFile)
	if t.CAFile != "" {
		file(p, "redis.tls.ca_file", t.CAFile)
		if fileExists(t.CAFile) {
			if _, err := caPool(t.CAFile); err != nil {
				p.add("redis.tls.ca_file", "%v", err)
			}
		}
	}
}

// certPair checks the cert_file and key_file under path: both or
// neither, each there, and together a PEM certificate chain and its key.
func certPair(p *problems, path, cert, key string) {
	switch {
	case cert != "" && key == "":
		p.add(path+".key_file", "is required when %s.cert_file is set", path)
	case cert == "" && key != "":
		p.add(path+".cert_file", "is required when %s.key_file is set", path)
	}
	if cert != "" {
		file(p, path+".cert_file", cert)
	}
	if key != "" {
		file(p, path+".key_file", key)
	}
	if fileExists(cert) && fileExists(key) {
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			p.add(path+".cert_file", "with %s.key_file: %v", path, err)
		}
	}
}

// fileExists reports whether name is a regular file.
func fileExists(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// urlUser is the user the URL s names, if any.
func urlUser(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}

// urlHasPassword reports whether the URL s carries a password.
func urlHasPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return false
	}
	pw, _ := u.User.Password()
	return pw != ""
}

// redisURL checks a redis:// or rediss:// URL as go-redis will read it,
// without ever echoing its password.
func redisURL(p *problems, s string) {
	u, err := url.Parse(s)
	if err != nil {
		p.add("redis.url", "%s is not a URL", shownURL(s))
		return
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		p.add("redis.url", "%s must start with redis:// or rediss://", shownURL(s))
		return
	}
	if atOutsideUserinfo(u, s) {
		// go-redis would read the rest of the password as the db, an
		// option or a fragment, and its errors would quote it.
		p.add("redis.url", "%s has an '@' outside its user:password part: percent-encode the password's reserved characters ('/' as %%2F, '?' as %%3F, '#' as %%23, '@' as %%40)", shownURL(s))
		return
	}
	o, err := redis.ParseURL(s)
	if err != nil {
		p.add("redis.url", "%s is not a Redis URL: %s", shownURL(s), strings.TrimPrefix(err.Error(), "redis: "))
		return
	}
	if o.TLSConfig != nil && o.TLSConfig.InsecureSkipVerify {
		p.add("redis.url", "%s turns certificate checks off (skip_verify); to trust a private CA, set redis.tls.ca_file", shownURL(s))
	}
}

var tierName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

func (l *RateLimits) check(p *problems) {
	oneOf(p, "rate_limits.backend", l.Backend, BackendLocal, BackendRedis)
	oneOf(p, "rate_limits.on_error", l.OnError, FailLocal, FailOpen, FailClosed)
	for _, name := range []string{TierAnonymous, TierClient} {
		if _, ok := l.Tiers[name]; !ok {
			p.add("rate_limits.tiers", "needs the %s tier", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(l.Tiers)) {
		path := child("rate_limits.tiers", name)
		if !tierName.MatchString(name) {
			p.add(path, "%q is not a tier name: lower-case letters, digits, _ and -, starting with a letter, at most 32", name)
		}
		l.Tiers[name].check(p, path)
	}
	if l.AnonymousIPCap != nil {
		l.AnonymousIPCap.check(p, "rate_limits.anonymous_ip_cap")
	}
	l.AuthFailures.check(p, "rate_limits.auth_failures")
	atLeast(p, "rate_limits.max_keys", l.MaxKeys, 1)
}

func (t Tier) check(p *problems, path string) {
	if rate(p, path+".rate", t.Rate) {
		atLeast(p, path+".burst", t.Burst, 1) // burst defaults to the rate's count
		if t.Burst > MaxCount {
			p.add(path+".burst", "must be at most %d, got %d", MaxCount, t.Burst)
		}
	}
}

// rate checks a Rate built in Go as ParseRate would; false if it is bad.
func rate(p *problems, path string, r Rate) bool {
	switch {
	case r == Rate{}:
		p.add(path, "is required")
	case r.Count < 1 || r.Count > MaxCount || r.Per < time.Second || r.Per%time.Second != 0:
		p.add(path, "%d per %s is not a rate: the count must be 1 to %d and the period whole seconds", r.Count, r.Per, MaxCount)
	default:
		return true
	}
	return false
}
