package gateway

import (
	"strings"
	"testing"
)

// TestTokenInFormReadersThird: bodies whose access_token a real reader yields
// as a top-level string field (outputs in the review report: PHP 8.2
// php -S, Rack 2.2.22, Werkzeug 3.1.8 and its dev server, gunicorn 20.1,
// multer 2 / busboy 1.6, formidable 3.5.4, found by a third review): each
// is refused, and the token does not reach the upstream.
func TestTokenInFormReadersThird(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	part := func(b string) string {
		return "--" + b + "\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n" + good + "\r\n--" + b + "--\r\n"
	}
	form := "a=1&access_token=" + good
	for _, tc := range []struct {
		name         string
		contentTypes []string
		body         string
	}{
		// Content-Type
		{"gunicorn+werkzeug: the last of two Content-Types", []string{"text/plain", "application/x-www-form-urlencoded"}, form},
		{"gunicorn+werkzeug: the last of two Content-Types, multipart", []string{"text/plain", "multipart/form-data; boundary=BBB"}, part("BBB")},
		{"werkzeug+formidable: NBSP before the media type", []string{"\xa0application/x-www-form-urlencoded"}, form},
		{"werkzeug+formidable: NEL after the media type", []string{"application/x-www-form-urlencoded\x85"}, form},
		{"werkzeug+formidable: NBSP before multipart", []string{"\xa0multipart/form-data; boundary=BBB"}, part("BBB")},
		{"formidable: 'urlencoded' anywhere in the Content-Type", []string{"text/plain; a=urlencoded"}, form},
		{"formidable: 'multipart' anywhere in the Content-Type", []string{"text/plain; x=multipart; boundary=BBB"}, part("BBB")},
		// Boundaries
		{"werkzeug: unquoted boundary ends at a non-token char", []string{"multipart/form-data; boundary=AB/CD"}, part("AB")},
		{"rack+werkzeug: unquoted boundary ends at a quote", []string{`multipart/form-data; boundary=AB"CD`}, part("AB")},
		{"werkzeug: %22 in a quoted boundary", []string{`multipart/form-data; boundary="A%22B"`}, part(`A"B`)},
		{"multer/busboy+werkzeug: backslash kept before a non-special char", []string{`multipart/form-data; boundary="A\(\"B"`}, part(`A\("B`)},
		{"formidable: latin-1 boundary re-encoded as UTF-8", []string{"multipart/form-data; boundary=X\xe9"}, part("X\xc3\xa9")},
		// Header blocks
		{"rack+werkzeug: a mid-line delimiter's block swallows the real one", []string{"multipart/form-data; boundary=BBB"},
			"--BBB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx--BBB\r\n--BBB\r\n\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n" + good + "\r\n--BBB--\r\n"},
		{"rack: a mid-line delimiter in the preamble", []string{"multipart/form-data; boundary=BBB"},
			"x--BBB\r\n--BBB\r\n\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n" + good + "\r\n--BBB--\r\n"},
		{"busboy: url-encoded in the charset the Content-Type names", []string{"application/x-www-form-urlencoded; charset=utf-16le"}, utf16le("access_token") + "=" + utf16le(good)},
		// Long url-encoded names cut inside a %XX
		{"php: leading %20s past 4 KiB", []string{"application/x-www-form-urlencoded"}, strings.Repeat("%20", 1400) + "access_token=" + good + "&b=1"},
		{"rack: leading %5Bs past 4 KiB", []string{"application/x-www-form-urlencoded"}, strings.Repeat("%5B", 1400) + "access_token=" + good + "&b=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var header []string
			for _, ct := range tc.contentTypes {
				header = append(header, "Content-Type", ct)
			}
			res, got := e.postForm(tc.body, header...)
			leaked := strings.Contains(got, good) || strings.Contains(got, utf16le(good))
			if res.status != 400 || res.err.Error != "invalid_request" || leaked {
				t.Errorf("got %d, upstream got the token: %v; want 400 invalid_request", res.status, leaked)
			}
		})
	}
}

// TestTokenInFormLegitHeaders: part headers no reader reads as
// access_token; each must pass (200).
func TestTokenInFormLegitHeaders(t *testing.T) {
	e := newEnv(t, "")
	for _, tc := range []struct{ name, contentType, body string }{
		{"a field named fb_access_token (passes url-encoded)", "multipart/form-data; boundary=BBB",
			"--BBB\r\nContent-Disposition: form-data; name=\"fb_access_token\"\r\n\r\nv\r\n--BBB--\r\n"},
		{"a field named google_access_token", "multipart/form-data; boundary=BBB",
			"--BBB\r\nContent-Disposition: form-data; name=\"google_access_token\"\r\n\r\nv\r\n--BBB--\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res, _ := e.postForm(tc.body, "Content-Type", tc.contentType); res.status != 200 {
				t.Errorf("got %d %s, want 200", res.status, res.err.Error)
			}
		})
	}
}

// utf16le is s, ASCII, in UTF-16LE.
func utf16le(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		b.WriteByte(0)
	}
	return b.String()
}
