package gateway

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

// TestTokenInFormsLenientReaders: bodies whose access_token PHP 8.2
// ($_POST, php -S) or Rack 2.2 (Rack::Request#POST) read, each checked
// against the real parser by a review: PHP decodes a name's valid %XX and
// leaves the rest; ends an unquoted multipart name at a space and a quoted
// one at its quote; glues a header line with no ':' onto the header before
// it; ends a header block at a line that starts with NUL; and reads lines
// in 5120-byte pieces, so a delimiter or a header may start mid-line. Rack
// reads a POST with no Content-Type as a form, any multipart/* type, and a
// first delimiter after spaces. And a gzip'd form, which Express's
// body-parser inflates. Each is refused with 400 invalid_request, in the
// first 64 KiB and past them; a JSON body sent as a form (curl -d) is not.
func TestTokenInFormsLenientReaders(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	const mp = "multipart/form-data; boundary=BBB"
	part := func(disposition string) string {
		return "--BBB\r\nContent-Disposition: " + disposition + "\r\n\r\n" + good + "\r\n--BBB--\r\n"
	}
	pad := strings.Repeat("x", 5120)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("a=1&access_token=" + good))
	zw.Close()
	for _, tc := range []struct {
		name, contentType, encoding, body string
		status                            int
	}{
		{"fail/php: invalid %XX left, NUL cut", "application/x-www-form-urlencoded", "", "a=1&access_token%00%zz=" + good, 400},
		{"fail/php: array with an invalid %", "application/x-www-form-urlencoded", "", "access%5Ftoken[%]=" + good, 400},
		{"fail/php: unquoted name ends at a space", mp, "", part("form-data; name=access_token junk"), 400},
		{"fail/php: text after the closing quote", mp, "", part(`form-data; name="access_token"junk`), 400},
		{"fail/php: a line with no colon continues the header", mp, "", part("form-data; name=\"acc\r\ness_token\""), 400},
		{"fail/php: a line starting with NUL ends the headers", mp, "", "--BBB\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\x00\r\n" + good + "\r\n--BBB--\r\n", 400},
		{"fail/php: 5120-byte preamble line", mp, "", pad + part(`form-data; name="access_token"`), 400},
		{"fail/php: 5120-byte header line", mp, "", "--BBB\r\nX-Pad: " + pad[7:] + "Content-Disposition: form-data; name=\"access_token\"\r\n\r\n" + good + "\r\n--BBB--\r\n", 400},
		{"fail/php: 5120-byte epilogue line", mp, "", part(`form-data; name="a"`) + "\r\n" + pad + part(`form-data; name="access_token"`), 400},
		{"fail/rack: POST with no Content-Type", "", "", "a=1&access_token=" + good, 400},
		{"fail/rack: multipart/mixed", "multipart/mixed; boundary=BBB", "", part(`form-data; name="access_token"`), 400},
		{"fail/rack: delimiter after spaces", mp, "", " " + part(`form-data; name="access_token"`), 400},
		{"fail/express: gzip'd form", "application/x-www-form-urlencoded", "gzip", gz.String(), 400},
		{"fail/php: past the peek, header block ended by NUL", mp, "", "--BBB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + strings.Repeat("y", 70<<10) + "\r\n--BBB\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\x00\r\n" + good + strings.Repeat("z", 20<<10) + "\r\n--BBB--\r\n", 400},
		{"ok/JSON sent as a form", "application/x-www-form-urlencoded", "", `{"query":"` + strings.Repeat("lorem ipsum ", 1000) + `"}`, 200},
		{"ok/binary POST with no Content-Type", "", "", strings.Repeat("\x00\x01binary", 2000), 200},
		{"ok/gzip'd JSON", "application/json", "gzip", gz.String(), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var header []string
			if tc.contentType != "" {
				header = append(header, "Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				header = append(header, "Content-Encoding", tc.encoding)
			}
			res, got := e.postForm(tc.body, header...)
			if res.status != tc.status || tc.status == 400 && res.err.Error != "invalid_request" {
				t.Errorf("got %d %s, want %d", res.status, res.err.Error, tc.status)
			}
			if tc.status == 400 && strings.Contains(got, good) {
				t.Errorf("the upstream got the token")
			}
		})
	}
}
