package gateway

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// TestTokenInFormBodiesPHPReads: form bodies the gateway does not look
// into, whose access_token PHP 8.2 puts in $_POST['access_token'] (checked
// with php -S): SAPI takes the media type up to the first ';', ',' or
// space, lowercased (main/SAPI.c sapi_read_post_data), so a Content-Type
// that mime.ParseMediaType refuses is still a form to PHP; and $_POST holds
// multipart/form-data fields as well (as do Go's Request.FormValue and
// ASP.NET Core's Request.Form). (PHP also reads a form past the first
// maxFormPeek bytes: see TestTokenInFormPastThePeek.)
func TestTokenInFormBodiesPHPReads(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	for _, ct := range []string{
		"application/x-www-form-urlencoded, text/plain",
		"application/x-www-form-urlencoded foo",
		"application/x-www-form-urlencoded; a=1; a=2",
	} {
		r, _ := http.NewRequest("POST", e.srv.URL+"/public/x", strings.NewReader("access_token="+good))
		r.Header.Set("Content-Type", ct)
		if res := e.do(r); res.status != 400 || res.err.Error != "invalid_request" {
			t.Errorf("Content-Type %q, body access_token=<token>: got %d, want 400 invalid_request", ct, res.status)
		}
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("access_token", good)
	mw.Close()
	r, _ := http.NewRequest("POST", e.srv.URL+"/public/x", &body)
	r.Header.Set("Content-Type", mw.FormDataContentType())
	if res := e.do(r); res.status != 400 || res.err.Error != "invalid_request" {
		t.Errorf("multipart/form-data field access_token=<token>: got %d, want 400 invalid_request", res.status)
	}
}

// TestTokenInMultipartAsPHPFindsTheBoundary: PHP 8.2 (main/rfc1867.c,
// checked with php -S) takes a multipart boundary from the first
// "boundary" in the Content-Type, in any case and even inside another
// parameter's name, then the first '=' after it, keeping spaces; Go's
// mime.ParseMediaType reads the boundary parameter itself. A part PHP
// reads as access_token under its boundary is refused whichever boundary
// Go would take; a Content-Type that names "boundary" twice, where
// readers part ways, is refused as it stands.
func TestTokenInMultipartAsPHPFindsTheBoundary(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	part := func(delim string) string {
		return delim + "\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n" + good + "\r\n" + delim + "--\r\n"
	}
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
	}{
		{"fail/boundary in another parameter's name", "multipart/form-data; xboundary=a; boundary=b", part("--a"), 400},
		{"fail/boundary_x before boundary", "multipart/form-data; boundary_x=a; boundary=b", part("--a"), 400},
		{"fail/boundary with a leading space", "multipart/form-data; boundary= a", part("-- a"), 400},
		{"fail/boundary, then a comma", "multipart/form-data; boundary=a, b", part("--a"), 400},
		{"fail/BOUNDARY", "multipart/form-data; BOUNDARY=a", part("--a"), 400},
		{"fail/boundary twice, the other one used", "multipart/form-data; boundary=b; boundary=c", part("--c"), 400},
		{"ok/quoted boundary, another part", "multipart/form-data; charset=x; boundary=\"a\"", "--a\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nx\r\n--a--\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := e.postForm(tc.body, "Content-Type", tc.contentType)
			if res.status != tc.status || tc.status == 400 && res.err.Error != "invalid_request" {
				t.Errorf("Content-Type %q: got %d %s, want %d", tc.contentType, res.status, res.err.Error, tc.status)
			}
		})
	}
}
