package gateway

import (
	"strings"
	"testing"
)

// TestTokenInFormMoreReaders: bodies whose access_token a real reader yields
// (Rack 2.2.22, PHP 8.2 php -S, formidable 3.5.4, Werkzeug 3.1.8,
// body-parser 1.x/2.x, each checked against the reader by a review):
// each is refused, and the token does not reach the upstream.
func TestTokenInFormMoreReaders(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	const mp = "multipart/form-data; boundary=BBB"
	end := "\r\n\r\n" + good + "\r\n--BBB--\r\n"
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"rack+werkzeug: empty line before the headers", mp, "--BBB\r\n\r\nContent-Disposition: form-data; name=\"access_token\"" + end},
		{"rack: LF-only empty line inside the head", mp, "--BBB\r\nX: y\n\nContent-Disposition: form-data; name=access_token" + end},
		{"rack+werkzeug: NUL line inside the head", mp, "--BBB\r\nX: y\r\n\x00\r\nContent-Disposition: form-data; name=access_token" + end},
		{"rack+werkzeug+formidable: LF CRLF is no empty line", mp, "--BBB\r\nX: a\n\r\nContent-Disposition: form-data; name=access_token" + end},
		{"rack: name from Content-ID", mp, "--BBB\r\nContent-ID: access_token" + end},
		{"rack: name from Content-Type + []", mp, "--BBB\r\nContent-Type: access_token" + end},
		{"rack: unanchored Content-Disposition", mp, "--BBB\r\nX-Content-Disposition: form-data; name=access_token" + end},
		{"rack: backslash in a quoted name", mp, "--BBB\r\nContent-Disposition: form-data; name=\"acc\\ess_token\"; junk" + end},
		{"php: NUL before the colon continues the header", mp, "--BBB\r\nContent-Disposition: form-data; name=\"acc\r\ness_token\"\x00:x" + end},
		{"formidable: \\bname= in another parameter", mp, "--BBB\r\nContent-Disposition: form-data; x-name=access_token" + end},
		{"formidable: name= inside a quoted value", mp, "--BBB\r\nContent-Disposition: form-data; foo=\"x name=access_token\"; name=x" + end},
		{"formidable: LF inside a header value", mp, "--BBB\r\nContent-Disposition: form-data\nX: ; name=access_token" + end},
		{"werkzeug: CR-only line breaks", mp, "--BBB\rContent-Disposition: form-data; name=access_token\r\r" + good + "\r--BBB--\r"},
		{"werkzeug: name* and a duplicate parameter", mp, "--BBB\r\nContent-Disposition: form-data; name*=utf-8''access%5Ftoken; x=1; x=2" + end},
		{"werkzeug: name*0 name*1 and a duplicate parameter", mp, "--BBB\r\nContent-Disposition: form-data; name*0=acc; name*1=ess_token; x=1; x=2" + end},
		{"werkzeug: boundary* and a duplicate parameter", "multipart/form-data; boundary*=utf-8''AAA; x=1; x=2", "--AAA\r\nContent-Disposition: form-data; name=access_token\r\n\r\n" + good + "\r\n--AAA--\r\n"},
		{"werkzeug: escaped quote in the boundary", `multipart/form-data; boundary="AAA\"B"; x=1; x=2`, "--AAA\"B\r\nContent-Disposition: form-data; name=access_token\r\n\r\n" + good + "\r\n--AAA\"B--\r\n"},
		{"body-parser: UTF-8 BOM", "application/x-www-form-urlencoded", "\xEF\xBB\xBFaccess_token=" + good},
		{"body-parser: UTF-8 BOM, past the peek", "application/x-www-form-urlencoded", "\xEF\xBB\xBFaccess_token=" + good + "&pad=" + strings.Repeat("x", 70<<10)},
		{"rack: multipart/form-data with no boundary is read as url-encoded", "multipart/form-data", "a=1&access_token=" + good},
		{"rack: multipart/mixed, empty boundary", "multipart/mixed; boundary=", "access_token=" + good},
		{"rack: Content-ID, past the peek", mp, "--BBB\r\nContent-Disposition: form-data; name=pad\r\n\r\n" + strings.Repeat("x", 70<<10) + "\r\n--BBB\r\nContent-ID: access_token" + end},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, got := e.postForm(tc.body, "Content-Type", tc.contentType)
			if res.status != 400 || res.err.Error != "invalid_request" || strings.Contains(got, good) {
				t.Errorf("got %d, upstream got the token: %v; want 400 invalid_request", res.status, strings.Contains(got, good))
			}
		})
	}
}
