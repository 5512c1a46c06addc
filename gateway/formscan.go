package gateway

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
)

// errTokenInBody is what a form body's reader returns, in place of the
// rest of the body, once it has come to a field named as access_token
// past the part that tokenInForm reads before the request goes upstream.
var errTokenInBody = errors.New("access_token in the form body")

// maxPartHeader bounds the header block of one multipart part, and
// maxHeaderLine each of its lines: PHP reads lines in pieces of 5120
// bytes (FILLUNIT in main/rfc1867.c), so in a longer line a header, or a
// delimiter, may start where no other reader sees one.
const (
	maxPartHeader = 16 << 10
	maxHeaderLine = 4 << 10
)

// formScanner looks for a field named as access_token (see tokenName) in
// a form body, fed to it piece by piece as the body arrives; it keeps
// what it needs of a field cut between two pieces, and no more than
// maxFieldName or maxPartHeader bytes of it.
type formScanner interface {
	// scan reports whether p, following the pieces scanned before it,
	// completes such a field.
	scan(p []byte) bool
	// end reports whether the body, ending after the last piece, holds
	// such a field then.
	end() bool
}

// scanners is a formScanner made of several, each fed every piece: one
// per boundary a multipart body may have.
type scanners []formScanner

func (ss scanners) scan(p []byte) bool {
	found := false
	for _, s := range ss {
		found = s.scan(p) || found
	}
	return found
}

func (ss scanners) end() bool {
	found := false
	for _, s := range ss {
		found = s.end() || found
	}
	return found
}

// queryScanner scans an application/x-www-form-urlencoded body: fields
// split by '&' or ';', each name up to its first '='. A name is checked
// with holdsToken when it ends. Of a name longer than maxFieldName the
// gateway keeps no more, and counts it as holding a token if what it kept
// could begin one: has "acce" or '%' in it, or only what tokenName trims.
type queryScanner struct {
	name  []byte
	long  bool // the name went past maxFieldName
	value bool // past the name, in the value
}

func (s *queryScanner) scan(p []byte) bool {
	for len(p) > 0 {
		if s.value {
			i := bytes.IndexAny(p, "&;")
			if i < 0 {
				return false
			}
			s.value, p = false, p[i+1:]
			continue
		}
		i := bytes.IndexAny(p, "=&;")
		if i < 0 {
			s.add(p)
			return false
		}
		s.add(p[:i])
		if s.nameEnds() {
			return true
		}
		s.value, p = p[i] == '=', p[i+1:]
	}
	return false
}

func (s *queryScanner) end() bool { return !s.value && s.nameEnds() }

func (s *queryScanner) add(p []byte) {
	if room := maxFieldName - len(s.name); len(p) > room {
		p, s.long = p[:room], true
	}
	s.name = append(s.name, p...)
}

// nameEnds checks the name just ended, and forgets it.
func (s *queryScanner) nameEnds() bool {
	// holdsToken's own first test, before the name is copied to call it.
	maybe := containsFoldASCII(s.name, "acce") || bytes.IndexByte(s.name, '%') >= 0
	var held bool
	if s.long {
		// What the gateway kept of the name may be all of it that
		// counts, or leading spaces and brackets that tokenName drops.
		held = maybe || len(bytes.Trim(s.name, " +[]")) == 0
	} else {
		held = maybe && holdsToken(string(s.name))
	}
	s.name, s.long = s.name[:0], false
	return held
}

// multipartScanner scans a multipart body as the most lenient of its
// readers would find its parts, PHP's (main/rfc1867.c) and Rack's: a part
// starts after "--" and the boundary anywhere, not only at the start of a
// line (PHP cuts long lines, and Rack allows spaces before the first), the
// closing delimiter included; its header block ends at an empty line or a
// line that starts with NUL, CRs or not (see partHoldsToken). A header
// block longer than maxPartHeader, or one of its lines longer than
// maxHeaderLine, counts as holding a token.
type multipartScanner struct {
	delim  []byte // "--" + boundary
	tail   []byte // the end of the last piece, where a delim may have begun
	probe  []byte // scratch: tail and the start of the next piece
	header []byte // the header block being read, from the delim on
	line   int    // where the header block's current line starts
	inHead bool
}

func newMultipartScanner(boundary string) *multipartScanner {
	return &multipartScanner{delim: []byte("--" + boundary)}
}

func (s *multipartScanner) scan(p []byte) bool {
	for len(p) > 0 {
		if s.inHead {
			n, done, tooLong := s.addHeader(p)
			if tooLong {
				return true
			}
			if !done {
				return false
			}
			if partHoldsToken(s.header) {
				return true
			}
			s.inHead, p = false, p[n:]
			continue
		}
		// A delimiter begun in the tail, then one wholly in p.
		k := len(s.delim) - 1
		s.probe = append(append(s.probe[:0], s.tail...), p[:min(k, len(p))]...)
		if i := bytes.Index(s.probe, s.delim); i >= 0 {
			p = p[i+len(s.delim)-len(s.tail):]
			s.startPart()
			continue
		}
		if i := bytes.Index(p, s.delim); i >= 0 {
			p = p[i+len(s.delim):]
			s.startPart()
			continue
		}
		// Keep the last k bytes seen: all of probe when p is shorter.
		if len(p) >= k {
			s.tail = append(s.tail[:0], p[len(p)-k:]...)
		} else {
			s.tail = append(s.tail[:0], s.probe[max(0, len(s.probe)-k):]...)
		}
		return false
	}
	return false
}

// startPart goes into a part's header block, after its delimiter.
func (s *multipartScanner) startPart() {
	s.tail, s.inHead, s.header, s.line = s.tail[:0], true, s.header[:0], 0
}

// A part whose header block the body ends in has no value to read.
func (s *multipartScanner) end() bool { return false }

// addHeader adds the start of p to the header block, up to the line that
// ends it, and reports how much of p that took, whether the block ended,
// and whether it, or one of its lines, grew too long to be checked. The
// block's first line is the rest of the delimiter's.
func (s *multipartScanner) addHeader(p []byte) (n int, done, tooLong bool) {
	for n < len(p) {
		i := bytes.IndexByte(p[n:], '\n')
		if i < 0 {
			s.header = append(s.header, p[n:]...)
			return len(p), false, len(s.header)-s.line > maxHeaderLine || len(s.header) > maxPartHeader
		}
		s.header = append(s.header, p[n:n+i+1]...)
		n += i + 1
		line := s.header[s.line:]
		if len(line) > maxHeaderLine || len(s.header) > maxPartHeader {
			return n, false, true
		}
		if s.line > 0 && (len(bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))) == 0 || line[0] == 0) {
			return n, true, false
		}
		s.line = len(s.header)
	}
	return n, false, false
}

// partHoldsToken reports a part header block, from the end of its
// delimiter to the line that ends it, with a Content-Disposition whose
// name reads as access_token. A line that starts with a space or a tab, or
// has no ':', goes on the header before it, as PHP reads it (and Go's
// textproto unfolds the first kind); names are matched in any case; a
// disposition of any type counts.
func partHoldsToken(block []byte) bool {
	var field strings.Builder
	check := func() bool {
		key, value, ok := strings.Cut(field.String(), ":")
		return ok && strings.EqualFold(strings.TrimSpace(key), "content-disposition") && namesToken(value)
	}
	_, lines, _ := bytes.Cut(block, []byte("\n"))
	for _, line := range bytes.Split(lines, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || line[0] == 0 {
			break
		}
		if field.Len() > 0 && (line[0] == ' ' || line[0] == '\t' || bytes.IndexByte(line, ':') < 0) {
			field.Write(line)
			continue
		}
		if check() {
			return true
		}
		field.Reset()
		field.Write(line)
	}
	return check()
}

// namesToken reports a Content-Disposition value whose name parameter
// reads as access_token to some reader: mime.ParseMediaType (quotes, RFC
// 2231), a plain split on ';', or PHP's.
func namesToken(disposition string) bool {
	if _, params, err := mime.ParseMediaType(disposition); err == nil && tokenName(params["name"]) {
		return true
	}
	for _, param := range strings.Split(disposition, ";") {
		key, value, ok := strings.Cut(param, "=")
		if ok && strings.EqualFold(strings.TrimSpace(key), "name") && tokenName(strings.Trim(strings.TrimSpace(value), `"'`)) {
			return true
		}
	}
	for _, name := range phpNames(disposition) {
		if tokenName(name) {
			return true
		}
	}
	return false
}

// phpNames are the name parameters of a Content-Disposition value as PHP
// reads them (rfc1867.c, php_ap_getword and php_ap_getword_conf): pairs
// split at ';' and keys at '=' outside '"' or '\” quotes; a quoted value
// ends at its quote, \" standing for a quote, and what follows is dropped;
// an unquoted one ends at white space.
func phpNames(disposition string) []string {
	var names []string
	for rest := disposition; rest != ""; {
		var pair string
		pair, rest = phpWord(strings.TrimLeft(rest, " \t\r\n\v\f"), ';')
		key, value := phpWord(pair, '=')
		if value == "" && !strings.Contains(pair, "=") || !strings.EqualFold(key, "name") {
			continue
		}
		value = strings.TrimLeft(value, " \t\r\n\v\f")
		if value != "" && (value[0] == '"' || value[0] == '\'') {
			q := value[0]
			var b strings.Builder
			for i := 1; i < len(value) && value[i] != q; i++ {
				if value[i] == '\\' && i+1 < len(value) && value[i+1] == q {
					i++
				}
				b.WriteByte(value[i])
			}
			names = append(names, b.String())
		} else if i := strings.IndexAny(value, " \t\r\n\v\f"); i >= 0 {
			names = append(names, value[:i])
		} else {
			names = append(names, value)
		}
	}
	return names
}

// phpWord splits s at the first stop outside quotes, as php_ap_getword
// does.
func phpWord(s string, stop byte) (word, rest string) {
	i := 0
	for i < len(s) && s[i] != stop {
		if q := s[i]; q == '"' || q == '\'' {
			i++
			for i < len(s) && s[i] != q {
				if s[i] == '\\' && i+1 < len(s) && s[i+1] == q {
					i++
				}
				i++
			}
		}
		if i < len(s) {
			i++
		}
	}
	if i < len(s) {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// formGuard is a form body past the part tokenInForm read: it scans each
// piece before handing it on, and in place of a piece that completes a
// field named as access_token, and of all that follows, it returns
// errTokenInBody. The field's value never goes upstream, and neither does
// the rest of the body, so the upstream sees a body cut short.
type formGuard struct {
	r   io.Reader
	s   formScanner
	err error
}

func (g *formGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if g.s.scan(p[:n]) || err == io.EOF && g.s.end() {
		g.err = errTokenInBody
		return 0, g.err
	}
	return n, err
}
