package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// corsPolicy is a route's CORS configuration, compiled.
type corsPolicy struct {
	anyOrigin        bool
	origins          []string
	allowMethods     string
	allowHeaders     string // "" reflects the request's Access-Control-Request-Headers
	exposeHeaders    string
	allowCredentials bool
	maxAge           string
}

// defaultExposed are the answer fields a browser client of a DPoP API needs
// to read: the challenge, the nonce, the budget.
var defaultExposed = []string{
	"WWW-Authenticate", "DPoP-Nonce", "X-Request-Id", "Retry-After",
	"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit",
}

func newCORSPolicy(origins, methods, headers, expose []string, credentials bool, maxAge time.Duration) *corsPolicy {
	c := &corsPolicy{
		anyOrigin:        slices.Contains(origins, "*"),
		origins:          origins,
		allowMethods:     strings.Join(methods, ", "),
		allowHeaders:     strings.Join(headers, ", "),
		exposeHeaders:    strings.Join(append(slices.Clone(defaultExposed), expose...), ", "),
		allowCredentials: credentials,
	}
	if maxAge > 0 {
		c.maxAge = strconv.FormatInt(int64(maxAge/time.Second), 10)
	}
	return c
}

// isPreflight reports whether r is a CORS preflight request, which never
// needs a token (its very purpose is to ask before sending one).
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin, or
// "" when the origin is not allowed.
func (c *corsPolicy) allowOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	if c.anyOrigin && !c.allowCredentials {
		return "*"
	}
	if c.anyOrigin || slices.Contains(c.origins, origin) {
		return origin
	}
	return ""
}

// preflight answers a preflight request for the route.
func (c *corsPolicy) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin")
	if ao := c.allowOrigin(r.Header.Get("Origin")); ao != "" {
		h.Set("Access-Control-Allow-Origin", ao)
		methods := c.allowMethods
		if methods == "" {
			methods = r.Header.Get("Access-Control-Request-Method")
		}
		h.Set("Access-Control-Allow-Methods", methods)
		headers := c.allowHeaders
		if headers == "" {
			headers = r.Header.Get("Access-Control-Request-Headers")
		}
		if headers != "" {
			h.Set("Access-Control-Allow-Headers", headers)
		}
		if c.allowCredentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if c.maxAge != "" {
			h.Set("Access-Control-Max-Age", c.maxAge)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// decorate sets the CORS fields of an actual (non-preflight) answer. The
// route's policy is the gateway's to apply: the upstream's own fields (a
// framework's permissive default, "*" with credentials) are dropped first,
// so that they cannot widen it.
func (c *corsPolicy) decorate(h http.Header, origin string) {
	for _, k := range corsAnswerFields {
		delete(h, k)
	}
	if ao := c.allowOrigin(origin); ao != "" {
		h.Set("Access-Control-Allow-Origin", ao)
		h.Set("Access-Control-Expose-Headers", c.exposeHeaders)
		if c.allowCredentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
	}
	h.Add("Vary", "Origin")
}

// corsAnswerFields are the CORS fields of an answer, as http.Header keys
// them.
var corsAnswerFields = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Max-Age", "Access-Control-Allow-Private-Network"}
