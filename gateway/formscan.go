package gateway

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// errTokenInBody is what a form body's reader returns, in place of the
// rest of the body, once it has come to a field named as access_token
// past the part that tokenInForm reads before the request goes upstream.
var errTokenInBody = errors.New("access_token in the form body")

// maxPartHeader bounds the header block of one multipart part: from its
// delimiter to the first CRLF CRLF after the delimiter's line.
const maxPartHeader = 16 << 10

// bom is the UTF-8 byte order mark, which body-parser drops from the start
// of a form.
const bom = "\ufeff"

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
// per boundary a multipart body may have, and one for each way a reader
// may read the body (url-encoded too, for Rack or formidable).
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
// could begin one.
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
	var held bool
	if s.long {
		// What the gateway kept may begin a spelling of access_token
		// after what tokenName drops, or be all dropped.
		kept := string(s.name)
		// An escape the cut went through is no part of the name.
		if i := strings.LastIndexByte(kept, '%'); i >= 0 && i >= len(kept)-2 {
			kept = kept[:i]
		}
		kept = strings.TrimLeft(strings.TrimPrefix(unescapeLeniently(kept), bom), " []")
		match, more := beginsTokenName([]byte(kept))
		held = match || more
	} else {
		// holdsToken's own first test, before the name is copied for it.
		maybe := containsFoldASCII(s.name, "acce") || bytes.IndexByte(s.name, '%') >= 0
		held = maybe && holdsToken(string(s.name))
	}
	s.name, s.long = s.name[:0], false
	return held
}

// multipartScanner scans a multipart body for parts that some reader
// would name access_token. Readers part ways on nearly everything in a
// part's header block: where it starts (after "--" and the boundary at
// the start of a line, after spaces for Rack, anywhere in a line PHP cut
// in 5120-byte pieces), where it ends (an empty line, CRs or not, or one
// that starts with NUL, for PHP and Go; only CRLF CRLF, the latest, for
// Rack), which header names the part (Content-Disposition, anywhere in a
// header's name for Rack; Content-ID and Content-Type too for Rack) and
// how (name= after a ';', or anywhere after a word break for formidable;
// with backslashes dropped for Rack; lines glued with no separator for
// PHP). So the scanner does not parse the block: from any "--" and
// boundary to the first CRLF CRLF after that delimiter's line, it looks
// for a spelling of access_token (beginsTokenName) with backslashes left
// out, and CRs, LFs and NULs too or not, and for an RFC 2231 name* (which
// Werkzeug decodes). A header block longer than maxPartHeader counts as holding a
// token. A file named access_token.txt is refused with the rest.
type multipartScanner struct {
	delim  []byte // "--" + boundary
	tail   []byte // the end of the last piece, where a delim may have begun
	probe  []byte // scratch: tail and the start of the next piece
	header []byte // the header block being read, from the delim on
	first  int    // where header's first line ends; -1: not yet
	// The header block with backslashes left out, and with CRs, LFs and
	// NULs either left out too (so that lines PHP glues are glued) or
	// kept (so that a line's end ends a word); and how much of each has
	// been looked into.
	glued, lines             []byte
	lookedGlued, lookedLines int
	inHead                   bool
}

func newMultipartScanner(boundary string) *multipartScanner {
	return &multipartScanner{delim: []byte("--" + boundary)}
}

func (s *multipartScanner) scan(p []byte) bool {
	for len(p) > 0 {
		if s.inHead {
			n, done, again := s.addHeader(p)
			if s.namesToken(done || again) || len(s.header) > maxPartHeader {
				return true
			}
			if again {
				s.startPart()
				p = p[n:]
				continue
			}
			if !done {
				return false
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
	s.tail, s.inHead, s.first = s.tail[:0], true, -1
	s.header, s.glued, s.lines, s.lookedGlued, s.lookedLines = s.header[:0], s.glued[:0], s.lines[:0], 0, 0
}

// end: a header block the body ends in is looked into as a whole.
func (s *multipartScanner) end() bool { return s.inHead && s.namesToken(true) }

// addHeader adds the start of p to the header block, up to the first CRLF
// CRLF after the block's first line (the rest of the delimiter's), or up
// to a delimiter before that, and reports how much of p that took and
// whether the block ended at the CRLF CRLF (done) or at a delimiter
// (again). It takes no more than maxPartHeader+1 bytes in all.
func (s *multipartScanner) addHeader(p []byte) (n int, done, again bool) {
	old := len(s.header)
	s.header = append(s.header, p[:min(len(p), max(0, maxPartHeader+1-old))]...)
	if s.first < 0 {
		if i := bytes.IndexByte(s.header[old:], '\n'); i >= 0 {
			s.first = old + i
		}
	}
	end := len(s.header)
	if s.first >= 0 {
		// An end begun in the last piece, but none that starts before
		// the first line's end: Rack looks for one after that line.
		from := max(s.first+1, old-3)
		if i := bytes.Index(s.header[from:], []byte("\r\n\r\n")); i >= 0 {
			end, done = from+i+4, true
		}
	}
	// A delimiter before the block's end ends it, and starts a block of
	// its own: Rack and Werkzeug read on from there.
	from := max(0, old-len(s.delim)+1)
	if i := bytes.Index(s.header[from:end], s.delim); i >= 0 {
		end, done, again = from+i+len(s.delim), false, true
	}
	s.header = s.header[:end]
	for _, c := range s.header[old:] {
		if c == '\\' {
			continue
		}
		s.lines = append(s.lines, c)
		if c != '\r' && c != '\n' && c != 0 {
			s.glued = append(s.glued, c)
		}
	}
	return end - old, done, again
}

// namesToken looks into the header block's new text for a spelling of
// access_token or an RFC 2231 name*; whole says the block is all there,
// so that a spelling cut off by its end counts.
func (s *multipartScanner) namesToken(whole bool) bool {
	if namesToken(s.glued, &s.lookedGlued, whole) || namesToken(s.lines, &s.lookedLines, whole) {
		return true
	}
	if !whole || !bytes.Contains(s.lines, []byte("=?")) {
		return false
	}
	// RFC 2047 encoded words, which Commons FileUpload (Tomcat, Spring)
	// decodes in names, B and Q, and ASP.NET Core, B.
	decoded, err := wordDecoder.DecodeHeader(string(s.lines))
	var looked int
	return err == nil && namesToken([]byte(decoded), &looked, true)
}

// wordDecoder decodes RFC 2047 words in any charset, taking one it does
// not know byte for byte.
var wordDecoder = &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}

// namesToken looks into text from *looked on (less an overlap) for a
// spelling of access_token (beginsTokenName) or an RFC 2231 name*, and
// moves *looked to its end.
func namesToken(text []byte, looked *int, whole bool) bool {
	// A spelling is at most 12 runes of 3 bytes and the rune after them.
	const overlap = 40
	for i := max(0, *looked-overlap); i < len(text); i++ {
		if c := text[i] | 0x20; c != 'a' && c != 'n' {
			continue
		}
		if r, _ := utf8.DecodeLastRune(text[:i]); i > 0 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_') {
			continue
		}
		// A nested name, user[access_token], is no top-level field, and
		// a file's name no field's.
		if i >= 2 && text[i-1] == '[' && isWordByte(text[i-2]) || inQuotedFilename(text[:i]) {
			continue
		}
		if match, more := beginsTokenName(text[i:]); match || more && whole {
			return true
		}
		if indexFoldASCII(text[i:min(len(text), i+5)], "name*") == 0 && (i == 0 || !isWordByte(text[i-1])) {
			return true
		}
	}
	*looked = len(text)
	return false
}

// inQuotedFilename reports whether the text before a spelling ends inside
// a quoted filename: its last quote, on the last line, opens a
// filename="…" value. The value ends at the first quote after it, escaped
// or not, as the least lenient reader ends it.
func inQuotedFilename(before []byte) bool {
	q := bytes.LastIndexByte(before, '"')
	if q < 0 || bytes.IndexByte(before[q:], '\n') >= 0 {
		return false
	}
	key := bytes.TrimRight(before[:q], " \t")
	if !bytes.HasSuffix(key, []byte("=")) {
		return false
	}
	key = bytes.TrimRight(key[:len(key)-1], " \t")
	if len(key) < len("filename") || indexFoldASCII(key[len(key)-len("filename"):], "filename") != 0 {
		return false
	}
	// The quote must open the value: an even number of quotes before it
	// on its line.
	line := before[bytes.LastIndexByte(before[:q], '\n')+1 : q]
	return bytes.Count(line, []byte(`"`))%2 == 0
}

// beginsTokenName reports whether b begins with a spelling of access_token
// that tokenName takes (any case, ſ and K too; '.', ' ' or '[' for '_')
// followed by a rune that ends a word; more, whether b ends before that
// can be told.
func beginsTokenName(b []byte) (match, more bool) {
	const want = "access_token"
	i := 0
	for _, c := range want {
		if i >= len(b) || !utf8.FullRune(b[i:]) {
			return false, true
		}
		r, size := utf8.DecodeRune(b[i:])
		if !spells(c, r) {
			return false, false
		}
		i += size
	}
	if i >= len(b) || !utf8.FullRune(b[i:]) {
		return false, true
	}
	r, _ := utf8.DecodeRune(b[i:])
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_', false
}

// isWordByte reports an ASCII letter, digit or '_'.
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
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
