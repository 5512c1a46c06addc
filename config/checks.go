package config

import (
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The small checks Validate is made of. Each adds at most one problem.

func required(p *problems, path, v string) bool {
	if v == "" {
		p.add(path, "is required")
		return false
	}
	return true
}

func oneOf(p *problems, path, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		p.add(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func positive(p *problems, path string, d Duration) {
	if d <= 0 {
		p.add(path, "must be positive, got %s", d)
	}
}

func notNegative(p *problems, path string, d Duration) {
	if d < 0 {
		p.add(path, "must not be negative, got %s", d)
	}
}

func between(p *problems, path string, v, lo, hi int) {
	if v < lo || v > hi {
		p.add(path, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func atLeast(p *problems, path string, v, lo int) {
	if v < lo {
		p.add(path, "must be at least %d, got %d", lo, v)
	}
}

// hostPort reports whether s is host:port with a numeric port; the host
// may be empty (all interfaces) unless needHost.
func hostPort(s string, needHost bool) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || needHost && host == "" || strings.ContainsAny(host, "/ ") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && strings.Trim(port, "0123456789") == "" && n <= 65535
}

// sameAddress reports whether listening on a and on b would clash: the
// same port, and the same host or a wildcard one.
func sameAddress(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return pa == pb && pa != "0" && (ha == hb || wild(ha) || wild(hb))
}

// httpURL checks that s is an absolute http or https URL without
// credentials and, unless allowQuery, without query or fragment.
func httpURL(p *problems, path, s string, allowQuery bool) (*url.URL, bool) {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		p.add(path, "%s is not an absolute http or https URL", shownURL(s))
	case u.User != nil:
		p.add(path, "%s must not contain credentials", shownURL(s))
	case u.Fragment != "" || u.RawFragment != "" || strings.Contains(s, "#"):
		p.add(path, "%s must not have a fragment", shownURL(s))
	case !allowQuery && (u.RawQuery != "" || u.ForceQuery):
		p.add(path, "%s must not have a query", shownURL(s))
	default:
		return u, true
	}
	return nil, false
}

// shownURL quotes a URL for a message with any password masked.
func shownURL(s string) string {
	u, err := url.Parse(s)
	if err == nil && !atOutsideUserinfo(u, s) {
		return strconv.Quote(u.Redacted())
	}
	if strings.Contains(s, "@") {
		return "the URL (not shown: it may hold a password)"
	}
	return strconv.Quote(s)
}

// atOutsideUserinfo reports whether s, parsed as u, holds an '@' that is
// not the end of its userinfo: a password with a '/', '?' or '#' not
// percent-encoded ends the authority early, and the rest of the password
// lands in the path, query or fragment, where Redacted leaves it.
func atOutsideUserinfo(u *url.URL, s string) bool {
	return u.User == nil && strings.Contains(s, "@")
}

// file checks that name is an existing regular file. It does not open it:
// opening a FIFO would block.
func file(p *problems, path, name string) {
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add(path, "unreachable reference: %q does not exist", name)
	case err != nil:
		p.add(path, "unreachable reference: %v", err)
	case !fi.Mode().IsRegular():
		p.add(path, "unreachable reference: %q is not a regular file", name)
	}
}

// asymmetricAlgorithms are the JWS algorithms (RFC 7518, RFC 8037) a token
// or proof may use. HMAC and none are excluded on purpose: a resource
// server never shares a key with clients (RFC 9449 section 4.2, RFC 9068
// section 4).
var asymmetricAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}

func algorithms(p *problems, path string, algs []string) {
	if len(algs) == 0 {
		p.add(path, "needs at least one algorithm")
	}
	for i, a := range algs {
		up := strings.ToUpper(a)
		switch {
		case slices.Contains(asymmetricAlgorithms, a):
		case up == "NONE" || strings.HasPrefix(up, "HS"):
			p.add(item(path, i), "%q: symmetric and none algorithms are never accepted", a)
		default:
			p.add(item(path, i), "%q is not one of %s", a, strings.Join(asymmetricAlgorithms, ", "))
		}
	}
}

// scopeToken reports whether s is a scope-token (RFC 6749 section 3.3).
func scopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return s != ""
}

// methodToken reports whether s is an upper-case HTTP method token
// (RFC 9110 section 5.6.2).
func methodToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}
