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

// maxPartHeader bounds the header block of one multipart part.
const maxPartHeader = 16 << 10

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
// with holdsToken when it ends; a name longer than maxFieldName counts as
// one, since the gateway keeps no more of it, and names that long are not
// a form's.
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
	held := s.long || maybe && holdsToken(string(s.name))
	s.name, s.long = s.name[:0], false
	return held
}

// multipartScanner scans a multipart/form-data body as PHP reads one
// (main/rfc1867.c), the most lenient reader we know: a part starts after
// any line that begins with "--" and the boundary, the closing one
// included, and its header block ends at the first empty line, with or
// without CRs (see partHoldsToken). A header block longer than
// maxPartHeader counts as holding a token.
type multipartScanner struct {
	delim  []byte // "\n--" + boundary
	tail   []byte // the end of the last piece, where a delim may have begun
	header []byte // the header block being read, from the delim on
	first  int    // where the header block's first line ends; -1: not yet
	inHead bool
}

func newMultipartScanner(boundary string) *multipartScanner {
	// The body's first line may be the first delimiter: it follows an
	// implied line break.
	return &multipartScanner{delim: []byte("\n--" + boundary), tail: []byte("\n")}
}

func (s *multipartScanner) scan(p []byte) bool {
	for len(p) > 0 {
		if s.inHead {
			n, done := s.addHeader(p)
			if !done {
				return len(s.header) > maxPartHeader
			}
			if partHoldsToken(s.header) {
				return true
			}
			// The part's value starts a line: Go's multipart.Reader takes
			// a delimiter there even for an empty value.
			s.inHead, p = false, p[n:]
			s.tail = append(s.tail[:0], '\n')
			continue
		}
		// A delimiter begun in the tail, then one wholly in p.
		k := len(s.delim) - 1
		probe := append(s.tail, p[:min(k, len(p))]...)
		if i := bytes.Index(probe, s.delim); i >= 0 {
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
			s.tail = append(s.tail[:0], probe[max(0, len(probe)-k):]...)
		}
		return false
	}
	return false
}

// startPart goes into a part's header block, after its delimiter.
func (s *multipartScanner) startPart() {
	s.tail, s.inHead, s.header, s.first = s.tail[:0], true, s.header[:0], -1
}

// A part whose header block the body ends in has no value to read.
func (s *multipartScanner) end() bool { return false }

// addHeader adds the start of p to the header block, up to the empty line
// that ends it, and reports how much of p that took and whether it ended.
// It looks no further than maxPartHeader bytes in.
func (s *multipartScanner) addHeader(p []byte) (int, bool) {
	old := len(s.header)
	take := p[:min(len(p), max(0, maxPartHeader+3-old))]
	s.header = append(s.header, take...)
	// The first line is the rest of the delimiter's: the block ends at an
	// empty line after it.
	if s.first < 0 {
		i := bytes.IndexByte(s.header[old:], '\n')
		if i < 0 {
			return len(take), false
		}
		s.first = old + i
	}
	// From where an end begun in the last piece would start.
	for i := max(s.first, old-2); i < len(s.header); i++ {
		if s.header[i] != '\n' {
			continue
		}
		j := i + 1
		if j < len(s.header) && s.header[j] == '\r' {
			j++
		}
		if j < len(s.header) && s.header[j] == '\n' {
			s.header = s.header[:j+1]
			return j + 1 - old, true
		}
	}
	return len(take), false
}

// partHoldsToken reports a part header block, from the end of its
// delimiter to its empty line, with a Content-Disposition whose name reads
// as access_token. Header lines are unfolded, and names are matched in any
// case, as PHP does; a disposition of any type counts.
func partHoldsToken(block []byte) bool {
	_, lines, _ := bytes.Cut(block, []byte("\n"))
	var fields []string
	for _, line := range strings.Split(string(lines), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if len(fields) > 0 && line != "" && (line[0] == ' ' || line[0] == '\t') {
			fields[len(fields)-1] += line
			continue
		}
		fields = append(fields, line)
	}
	for _, f := range fields {
		key, value, ok := strings.Cut(f, ":")
		if ok && strings.EqualFold(strings.TrimSpace(key), "content-disposition") && namesToken(value) {
			return true
		}
	}
	return false
}

// namesToken reports a Content-Disposition value whose name parameter
// reads as access_token, as mime.ParseMediaType reads the value (quotes,
// RFC 2231) or as a plain split on ';' does.
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
	return false
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
