package config

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// routeName is a route's metrics label: short, lower-case, no spaces.
var routeName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

func (c *Config) checkRoutes(p *problems) {
	names := map[string]int{}
	issuers := map[string]*Issuer{}
	for i := range c.Issuers {
		issuers[c.Issuers[i].Issuer] = &c.Issuers[i]
	}
	for i := range c.Routes {
		r, path := &c.Routes[i], item("routes", i)
		if required(p, path+".name", r.Name) {
			if !routeName.MatchString(r.Name) {
				p.add(path+".name", "%q is not a route name: lower-case letters, digits, _ . and -, at most 64", r.Name)
			}
			if j, dup := names[r.Name]; dup {
				p.add(path+".name", "%q is already the name of routes[%d]", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		if r.Host != "" && !validHost(r.Host) {
			p.add(path+".host", "%q is not a host or host:port", r.Host)
		}
		if required(p, path+".path_prefix", r.PathPrefix) && (!strings.HasPrefix(r.PathPrefix, "/") || strings.ContainsAny(r.PathPrefix, "?# ")) {
			p.add(path+".path_prefix", `%q must start with "/" and have no query or fragment`, r.PathPrefix)
		}
		for j, m := range r.Methods {
			if !methodToken(m) {
				p.add(item(path+".methods", j), "%q is not an upper-case HTTP method such as GET", m)
			}
		}
		if required(p, path+".upstream", r.Upstream) {
			httpURL(p, path+".upstream", r.Upstream, false)
		}
		oneOf(p, path+".auth", r.Auth, AuthNone, AuthOptional, AuthRequired)
		oneOf(p, path+".dpop", r.DPoP, DPoPRequired, DPoPOptional)
		for j, s := range r.Scopes {
			if !scopeToken(s) {
				p.add(item(path+".scopes", j), "%q is not a scope (RFC 6749 section 3.3: no spaces or quotes)", s)
			}
		}
		c.checkRouteAuth(p, path, r, issuers)
		if r.Resource != "" {
			httpURL(p, path+".resource", r.Resource, true)
		}
		for _, tier := range slices.Sorted(maps.Keys(r.RateLimits)) {
			if _, ok := c.RateLimits.Tiers[tier]; !ok {
				p.add(child(path+".rate_limits", tier), "unreachable reference: no tier %q in rate_limits.tiers", tier)
				continue
			}
			rate(p, child(path+".rate_limits", tier), r.RateLimits[tier])
		}
		positive(p, path+".timeout", r.Timeout)
		if r.CORS != nil {
			r.CORS.check(p, path+".cors")
		}
	}
	c.checkOverlaps(p)
	if fa := c.ForwardAuth; fa.Enabled || fa.Path != "" {
		if !strings.HasPrefix(fa.Path, "/") || strings.ContainsAny(fa.Path, "?# ") {
			p.add("forward_auth.path", `%q must start with "/" and have no query or fragment`, fa.Path)
		}
		for i, r := range c.Routes {
			if fa.Enabled && r.PathPrefix == fa.Path {
				p.add("forward_auth.path", "%q is also the path_prefix of %s", fa.Path, c.routeRef(i))
			}
		}
	}
}

// checkRouteAuth checks what a route asks of tokens against the issuers.
func (c *Config) checkRouteAuth(p *problems, path string, r *Route, issuers map[string]*Issuer) {
	if r.Auth == AuthNone {
		if len(r.Scopes) > 0 {
			p.add(path+".scopes", "has no effect with auth: none")
		}
		if r.Introspect {
			p.add(path+".introspect", "has no effect with auth: none")
		}
		if len(r.Issuers) > 0 {
			p.add(path+".issuers", "has no effect with auth: none")
		}
		return
	}
	if len(c.Issuers) == 0 {
		p.add(path+".auth", "needs at least one entry in issuers")
		return
	}
	accepted := c.Issuers
	if len(r.Issuers) > 0 {
		accepted = nil
		for j, name := range r.Issuers {
			if iss, ok := issuers[name]; ok {
				accepted = append(accepted, *iss)
			} else {
				p.add(item(path+".issuers", j), "unreachable reference: %q is not an issuer in issuers", name)
			}
		}
	}
	if r.Introspect && !slices.ContainsFunc(accepted, func(i Issuer) bool { return i.Introspection != nil }) {
		p.add(path+".introspect", "needs an issuer with an introspection block among those the route accepts")
	}
}

// checkOverlaps finds routes no request could tell apart: the same host
// and path_prefix, and a method in common (no methods means all).
func (c *Config) checkOverlaps(p *problems) {
	type group struct {
		first, all int            // first route here, first with all methods; -1: none
		methods    map[string]int // method -> first route here with it
	}
	groups := map[[2]string]*group{}
	for i, r := range c.Routes {
		if r.PathPrefix == "" {
			continue // reported as required
		}
		g := groups[[2]string{r.Host, r.PathPrefix}]
		if g == nil {
			g = &group{first: -1, all: -1, methods: map[string]int{}}
			groups[[2]string{r.Host, r.PathPrefix}] = g
		}
		clash := g.all
		if clash < 0 && len(r.Methods) == 0 {
			clash = g.first
		}
		for _, m := range r.Methods {
			if j, ok := g.methods[m]; ok && clash < 0 {
				clash = j
			}
		}
		if clash >= 0 {
			host := "any host"
			if r.Host != "" {
				host = "host " + r.Host
			}
			p.add(item("routes", i)+".path_prefix", "%q on %s is already routed by %s for the same methods",
				r.PathPrefix, host, c.routeRef(clash))
		}
		if g.first < 0 {
			g.first = i
		}
		if g.all < 0 && len(r.Methods) == 0 {
			g.all = i
		}
		for _, m := range r.Methods {
			if _, ok := g.methods[m]; !ok {
				g.methods[m] = i
			}
		}
	}
}

// routeRef names route i for a message: routes[2] (search).
func (c *Config) routeRef(i int) string {
	if name := c.Routes[i].Name; name != "" {
		return fmt.Sprintf("routes[%d] (%s)", i, name)
	}
	return fmt.Sprintf("routes[%d]", i)
}

// validHost reports whether h is a bare host or host:port, as in a Host
// header: no scheme, path, credentials or wildcard.
func validHost(h string) bool {
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.Hostname() != "" && u.User == nil &&
		u.Path == "" && u.RawQuery == "" && !strings.ContainsAny(h, "*/?#@ ")
}

func (cors *CORS) check(p *problems, path string) {
	if len(cors.AllowOrigins) == 0 {
		p.add(path+".allow_origins", `needs at least one origin, or "*"`)
	}
	for i, o := range cors.AllowOrigins {
		if o == "*" {
			if cors.AllowCredentials {
				p.add(item(path+".allow_origins", i), `"*" cannot be used with allow_credentials (Fetch standard, CORS protocol)`)
			}
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
			p.add(item(path+".allow_origins", i), `%q is not "*" or an origin such as https://app.example.com`, o)
		}
	}
	for i, m := range cors.AllowMethods {
		if !methodToken(m) {
			p.add(item(path+".allow_methods", i), "%q is not an upper-case HTTP method such as GET", m)
		}
	}
	notNegative(p, path+".max_age", cors.MaxAge)
}
