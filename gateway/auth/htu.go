package auth

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// maxHTULen bounds the URI we normalise; a longer htu is refused outright.
const maxHTULen = 8192

var errBadHTU = errors.New("not an absolute http(s) URI")

// NormalizeHTU returns the form in which two HTTP URIs that name the same
// resource compare equal, as RFC 9449 §4.3 item 9 asks ("ignoring any query
// and fragment parts"): RFC 3986 §6.2.2 syntax-based normalisation (scheme
// and host lower-cased, percent-encodings upper-cased and decoded where they
// encode an unreserved character, dot segments removed) and §6.2.3 scheme-
// based normalisation (default port dropped, empty path made "/"), with the
// bytes a path may not hold raw percent-encoded (see encodeRaw).
//
// Only absolute http and https URIs without userinfo are accepted. The result
// has no query and no fragment. It never panics, whatever s holds.
func NormalizeHTU(s string) (string, error) {
	if len(s) > maxHTULen {
		return "", errBadHTU
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "", errBadHTU
	}
	scheme = strings.ToLower(scheme)
	var defaultPort string
	switch scheme {
	case "http":
		defaultPort = "80"
	case "https":
		defaultPort = "443"
	default:
		return "", errBadHTU
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	host, err := normalizeAuthority(authority, defaultPort)
	if err != nil {
		return "", err
	}
	path = encodeRaw(path)
	path, err = normalizePercent(path)
	if err != nil {
		return "", err
	}
	path = removeDotSegments(path)
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + len(path))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(path)
	return b.String(), nil
}

// normalizeAuthority lower-cases the host, checks it and drops the port when
// it is the scheme's default. Userinfo is refused: a proof has no business
// naming credentials.
func normalizeAuthority(a, defaultPort string) (string, error) {
	if a == "" || strings.ContainsAny(a, "@ \t\r\n\\") {
		return "", errBadHTU
	}
	host, port, hasPort := a, "", false
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", errBadHTU
		}
		addr, err := netip.ParseAddr(a[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", errBadHTU
		}
		host = "[" + addr.String() + "]"
		switch rest := a[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			port, hasPort = rest[1:], true
		default:
			return "", errBadHTU
		}
	} else {
		if i := strings.LastIndexByte(a, ':'); i >= 0 {
			host, port, hasPort = a[:i], a[i+1:], true
		}
		if host == "" {
			return "", errBadHTU
		}
		for _, c := range []byte(host) {
			if !isUnreserved(c) && strings.IndexByte("!$&'()*+,;=", c) < 0 {
				return "", errBadHTU // percent-encoded hosts included: HTTP hosts are DNS names or IPs
			}
		}
		host = strings.ToLower(host)
	}
	if !hasPort || port == "" { // "host:" means the default port (RFC 3986 §6.2.3)
		return host, nil
	}
	n := 0
	for _, c := range []byte(port) {
		if c < '0' || c > '9' {
			return "", errBadHTU
		}
		if n = n*10 + int(c-'0'); n > 65535 {
			return "", errBadHTU
		}
	}
	if n == 0 {
		return "", errBadHTU
	}
	if p := strconv.Itoa(n); p != defaultPort {
		return host + ":" + p, nil
	}
	return host, nil
}

// encodeRaw percent-encodes the bytes of a path that RFC 3986 §3.3 does
// not allow raw: '[', ']', '|', '^', non-ASCII and the like. A raw byte
// and its percent-encoding name the same resource: WHATWG URL clients send
// '[', ']', '|' and '^' raw in a path and in htu, Go's server and client
// keep '[' and ']' raw and encode the rest, and a client may write htu
// from an IRI (RFC 3987 §3.1 maps it so) while its HTTP stack sends the
// bytes encoded. '%' is left for normalizePercent to check.
func encodeRaw(path string) string {
	n := 0
	for _, c := range []byte(path) {
		if !isPathChar(c) {
			n++
		}
	}
	if n == 0 {
		return path
	}
	var b strings.Builder
	b.Grow(len(path) + 2*n)
	for _, c := range []byte(path) {
		if isPathChar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

// normalizePercent upper-cases the hex digits of every percent-encoding and
// decodes those that encode an unreserved character (RFC 3986 §2.3, §6.2.2.1,
// §6.2.2.2). A "%" not followed by two hex digits makes the URI invalid.
func normalizePercent(s string) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", errBadHTU
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[v>>4])
			b.WriteByte(upperHex[v&15])
		}
		i += 2
	}
	return b.String(), nil
}

// removeDotSegments is the algorithm of RFC 3986 §5.2.4.
func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	out := make([]string, 0, strings.Count(in, "/")+1)
	segs := strings.Split(in, "/")
	// segs[0] is "" for an absolute path; keep the leading slash by
	// processing the remaining segments.
	for i, seg := range segs[1:] {
		last := i == len(segs)-2
		switch seg {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

// isPathChar: the bytes of an RFC 3986 §3.3 path (pchar and "/"), with "%"
// left for normalizePercent to check.
func isPathChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte("!$&'()*+,;=:@/%", c) >= 0
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved: ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 §2.3).
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
