package config

import (
	"slices"
	"strings"
	"time"
)

// Defaults, as documented on the Config types and in spec section 2.
var (
	defaultIssuerAlgorithms = []string{"RS256", "ES256", "PS256", "EdDSA"}
	defaultDPoPAlgorithms   = []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}
)

func defaultTiers() map[string]Tier {
	return map[string]Tier{
		TierAnonymous: {Rate: Rate{60, time.Minute}, Burst: 60},
		TierClient:    {Rate: Rate{600, time.Minute}, Burst: 600},
		"business":    {Rate: Rate{3000, time.Minute}, Burst: 3000}, // picked by tier_claim
	}
}

// applyDefaults gives every key the file leaves out its default value. A
// key the file writes keeps its value, even a zero one, for Validate to
// judge; c.src tells which keys the file writes. It also puts values in
// canonical form (lower-case hosts and log level, public_url without a
// trailing slash), since Validate never changes anything.
func applyDefaults(c *Config) {
	d := defaulter{c.src}

	s := &c.Server
	s.PublicURL = strings.TrimSuffix(s.PublicURL, "/")
	fill(d, "server.listen", &s.Listen, ":8080")
	fill(d, "server.admin_listen", &s.AdminListen, "127.0.0.1:9090")
	fill(d, "server.read_header_timeout", &s.ReadHeaderTimeout, Duration(10*time.Second))
	fill(d, "server.read_timeout", &s.ReadTimeout, Duration(60*time.Second))
	fill(d, "server.idle_timeout", &s.IdleTimeout, Duration(120*time.Second))
	fill(d, "server.max_header_bytes", &s.MaxHeaderBytes, 32<<10)
	fill(d, "server.max_credential_bytes", &s.MaxCredentialBytes, 8<<10)
	fill(d, "server.shutdown_grace", &s.ShutdownGrace, Duration(30*time.Second))

	fill(d, "log.level", &c.Log.Level, "info")
	fill(d, "log.format", &c.Log.Format, "json")
	c.Log.Level = strings.ToLower(c.Log.Level)

	for i := range c.Issuers {
		iss, path := &c.Issuers[i], item("issuers", i)
		fillList(d, path+".algorithms", &iss.Algorithms, defaultIssuerAlgorithms)
		if iss.RequireTyp == nil {
			iss.RequireTyp = new(true)
		}
		fill(d, path+".refresh_interval", &iss.RefreshInterval, Duration(15*time.Minute))
		fill(d, path+".min_refresh_interval", &iss.MinRefreshInterval, Duration(5*time.Second))
		if in := iss.Introspection; in != nil {
			path += ".introspection"
			fill(d, path+".cache_ttl", &in.CacheTTL, Duration(60*time.Second))
			fill(d, path+".negative_cache_ttl", &in.NegativeCacheTTL, Duration(10*time.Second))
			fill(d, path+".timeout", &in.Timeout, Duration(5*time.Second))
		}
	}

	p := &c.DPoP
	fill(d, "dpop.max_age", &p.MaxAge, Duration(60*time.Second))
	fill(d, "dpop.clock_skew", &p.ClockSkew, Duration(5*time.Second))
	fillList(d, "dpop.algorithms", &p.Algorithms, defaultDPoPAlgorithms)
	fill(d, "dpop.nonce.lifetime", &p.Nonce.Lifetime, Duration(5*time.Minute))

	fill(d, "replay.backend", &c.Replay.Backend, BackendMemory)
	fill(d, "replay.on_error", &c.Replay.OnError, FailClosed)
	fill(d, "replay.max_entries", &c.Replay.MaxEntries, 1_000_000)

	r := &c.Redis
	if r.Mode == "" { // "" is documented as single, written or not
		r.Mode = RedisSingle
	}
	fill(d, "redis.prefix", &r.Prefix, "dpopgate:")
	fill(d, "redis.timeout", &r.Timeout, Duration(200*time.Millisecond))

	l := &c.RateLimits
	fill(d, "rate_limits.backend", &l.Backend, BackendLocal)
	fill(d, "rate_limits.on_error", &l.OnError, FailLocal)
	fill(d, "rate_limits.tier_claim", &l.TierClaim, "tier")
	fill(d, "rate_limits.max_keys", &l.MaxKeys, 1_000_000)
	if l.Tiers == nil {
		l.Tiers = map[string]Tier{}
	}
	for name, t := range defaultTiers() {
		if _, ok := l.Tiers[name]; !ok {
			l.Tiers[name] = t
		}
	}
	for name, t := range l.Tiers {
		fillBurst(d, child("rate_limits.tiers", name), &t)
		l.Tiers[name] = t
	}
	if l.AnonymousIPCap != nil {
		fillBurst(d, "rate_limits.anonymous_ip_cap", l.AnonymousIPCap)
	}
	fill(d, "rate_limits.auth_failures.rate", &l.AuthFailures.Rate, Rate{10, time.Minute})
	fillBurst(d, "rate_limits.auth_failures", &l.AuthFailures)

	fill(d, "forward_auth.path", &c.ForwardAuth.Path, "/auth")

	for i := range c.Routes {
		rt, path := &c.Routes[i], item("routes", i)
		rt.Host = strings.ToLower(rt.Host)
		fill(d, path+".auth", &rt.Auth, AuthOptional)
		fill(d, path+".dpop", &rt.DPoP, DPoPRequired)
		fill(d, path+".timeout", &rt.Timeout, Duration(30*time.Second))
	}
}

// fillBurst defaults a tier's burst to its rate's count.
func fillBurst(d defaulter, path string, t *Tier) {
	fill(d, path+".burst", &t.Burst, t.Rate.Count)
}

// defaulter decides which keys take a default: those the file does not
// write (or writes as null) and whose value is still zero, as it is when
// no environment variable set it either.
type defaulter struct{ src *source }

func fill[T comparable](d defaulter, path string, v *T, def T) {
	var zero T
	if *v == zero && !d.src.has(path) {
		*v = def
	}
}

func fillList(d defaulter, path string, v *[]string, def []string) {
	if len(*v) == 0 && !d.src.has(path) {
		*v = slices.Clone(def)
	}
}
