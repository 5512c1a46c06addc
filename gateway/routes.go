package gateway

import (
	"net"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/dpopgate/dpopgate/ratelimit"
)

// authMode is a route's auth setting.
type authMode int

const (
	authNone     authMode = iota // credentials ignored (and stripped)
	authOptional                 // anonymous allowed; credentials, when sent, must be valid
	authRequired                 // a valid token is needed
)

// route is one compiled entry of the route table. It is read-only after
// compile and shared by every request that matches it.
type route struct {
	name        string
	host        string // "" for any; with a port when the config gave one
	prefix      string
	methods     map[string]bool // nil for any
	upstream    *url.URL
	stripPrefix bool
	auth        authMode
	requireDPoP bool
	scopes      []string
	scope       string          // scopes space-separated, for challenges
	issuers     map[string]bool // nil: every configured issuer
	issuerList  []string        // the same, as a list for auth.Request
	introspect  bool
	limits      map[string]ratelimit.Limit // tier -> limit, overrides applied
	timeout     time.Duration
	cors        *corsPolicy
	resource    string // RFC 9728 resource override, "" to derive
	proxy       *httputil.ReverseProxy
}

// routeTable finds the route for a request: among routes whose host and
// methods match, the one with the longest path prefix; of the same prefix,
// a route pinned to a host and port before one bound to the host alone,
// and that before a host-less one.
type routeTable []*route

func newRouteTable(routes []*route) routeTable {
	t := append(routeTable(nil), routes...)
	sort.SliceStable(t, func(i, j int) bool {
		if len(t[i].prefix) != len(t[j].prefix) {
			return len(t[i].prefix) > len(t[j].prefix)
		}
		return hostRank(t[i].host) > hostRank(t[j].host)
	})
	return t
}

// hostRank orders routes of the same prefix by how much of the Host they
// name: 2 for a host and port, 1 for a host, 0 for any host.
func hostRank(host string) int {
	switch h, port := splitHostPort(host); {
	case h == "":
		return 0
	case port == "":
		return 1
	}
	return 2
}

// match returns the route for host (as in the Host header), the decoded
// path and the method, or nil. Upstreams disagree on the case of a
// method: Django and Werkzeug (Flask) upper-case the one they are given,
// so to them a "get" is a GET, while Go's ServeMux, Java servlets and
// Rails take it for no GET at all. A method that is not in upper case is
// therefore routed both ways, and gets no route when the two disagree.
func (t routeTable) match(host, path, method string) *route {
	rt := t.find(host, path, method)
	if up := strings.ToUpper(method); up != method && t.find(host, path, up) != rt {
		return nil
	}
	return rt
}

// find is match for one reading of the method.
func (t routeTable) find(host, path, method string) *route {
	for _, rt := range t {
		if rt.host != "" && !hostMatches(rt.host, host) {
			continue
		}
		if !rt.allows(method) {
			continue
		}
		if prefixMatches(rt.prefix, path) {
			return rt
		}
	}
	return nil
}

// allows reports whether the route takes method. A HEAD is a GET to the
// upstream (Go's ServeMux, Express, Flask, Rails and Spring answer it with
// their GET handler), so a route that takes GET takes HEAD too: otherwise a
// HEAD would pass a GET-only route by for a laxer one and still run the
// GET handler behind it.
func (rt *route) allows(method string) bool {
	if rt.methods == nil {
		return true
	}
	return rt.methods[method] || method == "HEAD" && rt.methods["GET"]
}

// prefixMatches: prefix matches whole path segments, so /api matches /api
// and /api/x but not /apix; a prefix ending in "/" matches what follows it.
func prefixMatches(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// hostMatches compares a route's host with a request's Host, ignoring case
// and a trailing dot, and ignoring the request's port when the route names
// none.
func hostMatches(want, got string) bool {
	wh, wp := splitHostPort(want)
	gh, gp := splitHostPort(got)
	// "api.example.com." is api.example.com (a fully qualified name), as
	// DNS and ingresses read it.
	return strings.EqualFold(wh, strings.TrimSuffix(gh, ".")) && (wp == "" || wp == gp)
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return h, p
	}
	return strings.Trim(s, "[]"), ""
}

// pathProblem names what makes a decoded request path ambiguous, or "":
// the route is chosen on the path as sent, so a path that an ingress or an
// upstream would read as another one must not reach either. Refused: "."
// and ".." segments (resolved by most servers), empty segments ("//",
// merged by nginx and many frameworks), backslashes (read as "/" by IIS
// and others; %5C decodes to one), ";" (matrix parameters, which Java
// servers strip before routing) and control characters (a C upstream ends
// the path at a NUL, a Ruby "$" matches before a line feed; nginx refuses
// a decoded NUL too).
func pathProblem(path string) string {
	switch {
	case strings.IndexFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return "control_character"
	case strings.Contains(path, "//"):
		return "empty_segment"
	case strings.IndexByte(path, '\\') >= 0:
		return "backslash"
	case strings.IndexByte(path, ';') >= 0:
		return "matrix_parameter"
	case hasDotSegment(path):
		return "dot_segment"
	}
	return ""
}

// hasDotSegment reports whether a decoded path has a "." or ".." segment.
// Such paths are refused: the route is chosen on the path as sent, and an
// upstream that resolved the dots would serve another route's resource.
func hasDotSegment(path string) bool {
	for path != "" {
		var seg string
		seg, path, _ = strings.Cut(path, "/")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
