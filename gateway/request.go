package gateway

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"mime"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// target is the request the client made, as the gateway must judge it: the
// method and URI for routing and for the DPoP htm/htu checks. For a proxied
// request that is the request itself, with scheme and host taken from
// public_url or from trusted forwarding headers; for forward auth, the
// original request the ingress describes.
type target struct {
	method   string
	origin   string // scheme://host[:port] the client addressed (htu)
	host     string // Host for routing
	path     string // decoded path, for routing
	rawPath  string // escaped path, for htu
	rawQuery string
}

// htu is the URI a DPoP proof for this request must name (RFC 9449 §4.2),
// before normalisation.
func (t target) htu() string { return t.origin + t.rawPath }

// targetOf describes r as its client made it. The scheme and host are, in
// order of preference: public_url; the last X-Forwarded-Proto and
// X-Forwarded-Host values when the peer is a trusted proxy (the values the
// nearest proxy wrote); the connection and the Host header.
func (s *snapshot) targetOf(r *http.Request, peerTrusted bool) target {
	t := target{method: r.Method, host: r.Host, path: r.URL.Path, rawPath: r.URL.EscapedPath(), rawQuery: r.URL.RawQuery}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if peerTrusted {
		if p := lastValue(r.Header, "X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
		if h := lastValue(r.Header, "X-Forwarded-Host"); h != "" && validHost(h) {
			t.host = h
		}
	}
	if s.publicOrigin != "" {
		t.origin = s.publicOrigin
	} else {
		t.origin = scheme + "://" + t.host
	}
	return t
}

// lastValue returns the last comma-separated item of the last value of a
// header field, trimmed.
func lastValue(h http.Header, name string) string {
	vs := h.Values(name)
	if len(vs) == 0 {
		return ""
	}
	v := vs[len(vs)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// validHost accepts host or host:port made of the characters a Host field
// may hold (RFC 9110 §7.2), nothing that could bend a URI built from it.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range []byte(h) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// requestID returns the id of the request: the one a trusted proxy sent, or
// a new random one.
func requestID(r *http.Request, peerTrusted bool) string {
	if peerTrusted {
		if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && validHost(id) {
			return id
		}
	}
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tokenInQuery reports an access_token query parameter (RFC 6750 §2.3),
// which OAuth 2.1 forbids and we refuse.
func tokenInQuery(rawQuery string) bool {
	return holdsToken(rawQuery)
}

// maxFormPeek bounds how much of a form body is read to look for a token.
const maxFormPeek = 64 << 10

// maxFieldName bounds how much of a form field's name is kept: a longer
// one is refused if what is kept could begin an access_token (see
// queryScanner).
const maxFieldName = 4 << 10

// tokenInForm reports an access_token in a form body (RFC 6750 §2.2),
// as the most lenient reader of each kind of form would find it: an
// url-encoded body (and, as Rack reads it, a POST with no Content-Type),
// or a multipart one of any subtype (Rack reads multipart/mixed too),
// under every boundary a reader may take (multipartBoundaries); and
// either kind when "urlencoded" or "multipart" is anywhere in the
// Content-Type, as formidable reads it. It reads the body's first
// maxFormPeek bytes and looks into them, and puts them back; a longer body
// goes on through a formGuard, which looks into the rest as it streams
// upstream. A body whose form readers would part ways on counts as holding
// a token, as the gateway does not guess: one with two Content-Types
// (Werkzeug takes the last), or one with bytes past ASCII (Werkzeug trims
// a NBSP); a multipart boundary with a backslash, '"' or '%' in it, which
// readers unescape or not (multipartBoundaries); an url-encoded body in a
// charset where ASCII letters are not themselves (busboy decodes UTF-16);
// a compressed form (Express inflates one).
func tokenInForm(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	var ct string
	switch cts := r.Header.Values("Content-Type"); len(cts) {
	case 0:
	case 1:
		ct = cts[0]
	default:
		return true
	}
	for _, c := range []byte(ct) {
		if c >= 0x80 {
			return true
		}
	}
	var ss scanners
	mt := formMediaType(ct)
	if mt == "application/x-www-form-urlencoded" || mt == "" && r.Method == http.MethodPost || containsFoldASCII(ct, "urlencoded") {
		if !utf8Charset(ct) {
			return true
		}
		ss = append(ss, &queryScanner{})
	}
	if strings.HasPrefix(mt, "multipart/") || containsFoldASCII(ct, "multipart") {
		if _, params, err := mime.ParseMediaType(ct); err == nil && strings.ContainsAny(params["boundary"], `\"%`) {
			return true
		}
		boundaries, ok := multipartBoundaries(ct)
		if !ok {
			return true
		}
		for _, b := range boundaries {
			ss = append(ss, newMultipartScanner(b))
		}
		if !rackBoundary.MatchString(ct) {
			// Rack reads a multipart body it finds no boundary for as
			// an url-encoded one.
			ss = append(ss, &queryScanner{})
		}
	}
	if len(ss) == 0 {
		return false
	}
	if ct != "" && encoded(r.Header) {
		return true
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, maxFormPeek))
	rest := io.Reader(&formGuard{r: r.Body, s: ss})
	found := ss.scan(head) || err == nil && len(head) < maxFormPeek && ss.end()
	r.Body = readCloser{io.MultiReader(bytes.NewReader(head), rest), r.Body}
	return found
}

// utf8Charset reports a Content-Type with no charset, or one whose
// charset writes ASCII letters as ASCII does: UTF-8, ISO 8859, Windows
// 125x.
func utf8Charset(ct string) bool {
	if indexFoldASCII(ct, "charset") < 0 {
		return true
	}
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	// None of these has a character that folds to an ASCII letter of
	// access_token (as ſ and K do).
	switch cs := strings.ToLower(params["charset"]); {
	case cs == "", cs == "utf-8", cs == "utf8", cs == "us-ascii", cs == "ascii", cs == "latin1",
		strings.HasPrefix(cs, "iso-8859-"), strings.HasPrefix(cs, "windows-125"):
		return true
	}
	return false
}

// rackBoundary matches a Content-Type in which Rack 2 finds a multipart
// boundary (Rack::Multipart::MULTIPART).
var rackBoundary = regexp.MustCompile(`(?i)^multipart/.*boundary="?[^";,]+`)

// encoded reports a Content-Encoding other than identity.
func encoded(h http.Header) bool {
	for _, v := range h.Values("Content-Encoding") {
		for _, coding := range strings.Split(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return true
			}
		}
	}
	return false
}

// formMediaType is the media type of a Content-Type as PHP takes it (the
// most lenient reader of forms we know, main/SAPI.c): up to the first ';',
// ',', space or tab, in lower case.
func formMediaType(ct string) string {
	ct = strings.TrimLeft(ct, " \t")
	if i := strings.IndexAny(ct, ";, \t"); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(ct)
}

// multipartBoundaries are the boundaries that readers of a multipart body
// may take from its Content-Type ct, so that the gateway looks for parts
// under each: Go's (mime.ParseMediaType), and for each "boundary" in ct,
// in any case and even inside another parameter's name or value, the
// value after the first '=' that follows it, as PHP takes the first one
// (main/rfc1867.c) and Rack or formidable another: in quotes, or up to the
// first non-token byte, a quote, a ',' or ';', or a ';', spaces kept or
// trimmed. ok is false when the readers could take too many, when ct has
// an RFC 2231 "boundary*", or a quoted boundary with a backslash or a '%'
// (busboy keeps a backslash that Werkzeug drops, and Werkzeug decodes
// %XX): the gateway does not guess.
func multipartBoundaries(ct string) (boundaries []string, ok bool) {
	const (
		name = "boundary"
		most = 32 // boundaries looked for; a browser's Content-Type gives 2
	)
	add := func(b string) {
		for _, c := range []string{b, strings.TrimSpace(b), strings.Trim(strings.TrimSpace(b), `"`)} {
			if c != "" && !slices.Contains(boundaries, c) {
				boundaries = append(boundaries, c)
			}
		}
	}
	if _, params, err := mime.ParseMediaType(ct); err == nil {
		add(params[name])
	}
	for rest, seen := ct, 0; ; seen++ {
		i := indexFoldASCII(rest, name)
		if i < 0 {
			break
		}
		if seen == most {
			return nil, false
		}
		rest = rest[i+len(name):]
		if strings.HasPrefix(rest, "*") {
			return nil, false
		}
		_, v, found := strings.Cut(rest, "=")
		if !found {
			continue
		}
		if q := strings.TrimLeft(v, " \t"); strings.HasPrefix(q, `"`) {
			end := strings.IndexByte(q[1:], '"')
			if end < 0 {
				end = len(q) - 1
			}
			if strings.ContainsAny(q[1:1+end], `\%`) {
				return nil, false // unescaped by some, %-decoded by Werkzeug
			}
			add(q[1 : 1+end])
		}
		// Werkzeug ends an unquoted value at its first non-token byte,
		// Rack at a quote, PHP at ',' or ';', formidable at ';'.
		tokenEnd := strings.IndexFunc(v, func(r rune) bool { return r > 0x7e || !isTokenByte(byte(r)) })
		if tokenEnd < 0 {
			tokenEnd = len(v)
		}
		add(v[:tokenEnd])
		for _, stops := range []string{`";,`, ",;", ";"} {
			b := v
			if end := strings.IndexAny(v, stops); end >= 0 {
				b = v[:end]
			}
			add(b)
		}
		if len(boundaries) > most {
			return nil, false
		}
	}
	return boundaries, true
}

// isTokenByte reports a byte of an RFC 9110 token.
func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// holdsToken reports whether a query or form has a field an upstream could
// read as access_token (see tokenName), its name percent-decoded or not,
// with '&' or ';' between fields: url.ParseQuery skips a field after a
// ';', but some frameworks still split there.
func holdsToken(q string) bool {
	// Every spelling tokenName takes has "acce" in ASCII (only s and k
	// have other case forms outside ASCII); a percent-encoded one has '%'.
	if !containsFoldASCII(q, "acce") && !strings.Contains(q, "%") {
		return false
	}
	for q != "" {
		var field string
		field, q, _ = strings.Cut(q, "&")
		for field != "" {
			var f string
			f, field, _ = strings.Cut(field, ";")
			name, _, _ := strings.Cut(f, "=")
			if tokenName(name) || tokenName(unescapeLeniently(name)) {
				return true
			}
		}
	}
	return false
}

// unescapeLeniently decodes a form field's name as PHP's urldecode does:
// '+' is a space, a valid %XX its byte, and anything else stays as it is,
// where url.QueryUnescape would refuse the whole name.
func unescapeLeniently(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' {
			c = ' '
		} else if c == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				c = byte(v)
				i += 2
			}
		}
		b = append(b, c)
	}
	return string(b)
}

// tokenName reports whether a field name reads as access_token to some
// framework:
//   - in any case (ASP.NET Core matches names so, ſ for s included);
//   - after a UTF-8 byte order mark (body-parser drops one);
//   - with '.', ' ' or an unmatched '[' for the '_', leading spaces, and
//     anything from a NUL byte on (PHP turns those into '_', drops these,
//     and ends a name at NUL);
//   - with array syntax after it, access_token[] or access_token[0]
//     (PHP, Rack, qs: the field is then access_token's first element);
//   - wrapped in brackets, [access_token], access_token], ]access_token
//     (Rack 2 and qs unwrap them).
func tokenName(name string) bool {
	const want = "access_token"
	name, _, _ = strings.Cut(name, "\x00")
	name = strings.TrimLeft(strings.TrimPrefix(name, bom), " []")
	if i := strings.IndexByte(name, '['); i > 0 && strings.IndexByte(name[i:], ']') > 0 {
		name = name[:i]
	}
	name = strings.TrimRight(name, "]")
	i := 0
	for _, r := range name {
		if i == len(want) {
			return false
		}
		c := rune(want[i])
		if !spells(c, r) {
			return false
		}
		i++
	}
	return i == len(want)
}

// spells reports whether r stands for c, a letter of access_token or its
// '_', as tokenName reads a name: a letter in any case (ſ and K too), and
// '_', '.', ' ' or '[' for the '_'.
func spells(c, r rune) bool {
	if c == '_' {
		return strings.ContainsRune("_. [", r)
	}
	return unicode.ToLower(unicode.ToUpper(r)) == c || unicode.ToLower(r) == c
}

// containsFoldASCII reports whether s holds sub, a word of lower-case ASCII
// letters, in any case.
func containsFoldASCII[T string | []byte](s T, sub string) bool {
	return indexFoldASCII(s, sub) >= 0
}

// indexFoldASCII is the index of the first sub, a word of lower-case ASCII
// letters, in s in any case, or -1; the case of other bytes is left alone,
// as PHP's zend_str_tolower does. It runs on every query, so it stays a
// plain loop: b|0x20 is b in lower case for a letter, and equals a
// lower-case letter for nothing else.
func indexFoldASCII[T string | []byte](s T, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && s[i+j]|0x20 == sub[j] {
			j++
		}
		if j == len(sub) {
			return i
		}
	}
	return -1
}

type readCloser struct {
	io.Reader
	io.Closer
}

// responseWriter records the status and size of an answer for the access
// log. Unwrap lets http.ResponseController reach Flush and Hijack, which the
// reverse proxy uses for streams and WebSocket upgrades.
type responseWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *responseWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
