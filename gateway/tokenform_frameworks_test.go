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
