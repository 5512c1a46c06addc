package gateway

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTokenInFormPastThePeek: a form body is looked into as a whole, not
// only in the first maxFormPeek bytes that are read before the request
// goes upstream. Past them, the body streams to the upstream through a
// scanner: a field named as access_token stops it before the field's
// value, the upstream gets a cut-short body (which no form parser
// accepts), and the client 400 invalid_request. Bodies with no such field
// pass whole, however long, with or without a Content-Length.
func TestTokenInFormPastThePeek(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	pad := strings.Repeat("x", 3*maxFormPeek/2)
	multipartBody := func(fields ...string) (string, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, _ := mw.CreateFormFile("upload", "big.bin")
		fw.Write([]byte(pad))
		for i := 0; i+1 < len(fields); i += 2 {
			mw.WriteField(fields[i], fields[i+1])
		}
		mw.Close()
		return b.String(), mw.FormDataContentType()
	}
	const form = "application/x-www-form-urlencoded"
	type body struct{ content, contentType string }
	for _, tc := range []struct {
		name    string
		body    func() body
		chunked bool // no Content-Length: sent chunked, as it comes
		refused bool
	}{
		{"fail/url-encoded", func() body { return body{"pad=" + pad + "&access_token=" + good, form} }, false, true},
		{"fail/url-encoded, chunked", func() body { return body{"pad=" + pad + "&access_token=" + good, form} }, true, true},
		{"fail/url-encoded, name cut by the peek", func() body {
			return body{"pad=" + pad[:maxFormPeek-len("pad=&acc")] + "&access_token=" + good, form}
		}, false, true},
		{"fail/url-encoded, spelt as PHP reads it", func() body { return body{"pad=" + pad + ";%20Access.Token[]=" + good, form} }, false, true},
		{"fail/url-encoded, name too long to check", func() body {
			return body{"pad=" + pad + "&" + strings.Repeat("+", maxFieldName) + "access_token=" + good, form}
		}, false, true},
		{"fail/multipart", func() body { b, ct := multipartBody("access_token", good); return body{b, ct} }, false, true},
		{"fail/multipart, chunked", func() body { b, ct := multipartBody("access_token", good); return body{b, ct} }, true, true},
		{"fail/multipart, after the closing delimiter", func() body {
			b, ct := multipartBody()
			boundary := ct[strings.Index(ct, "=")+1:]
			return body{b + "--" + boundary + "\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n" + good + "\r\n--" + boundary + "--\r\n", ct}
		}, false, true},
		{"ok/url-encoded, long", func() body {
			return body{"pad=" + pad + "&access=1&token=2&" + strings.Repeat("a", maxFieldName) + "=3", form}
		}, false, false},
		{"ok/url-encoded, long, chunked", func() body { return body{"pad=" + pad + "&access=1", form} }, true, false},
		{"ok/multipart, long", func() body { b, ct := multipartBody("name", "access_token"); return body{b, ct} }, false, false},
		{"ok/multipart, long, chunked", func() body { b, ct := multipartBody("access", "token"); return body{b, ct} }, true, false},
		{"ok/not a form", func() body { return body{pad + "&access_token=" + good, "application/octet-stream"} }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(time.Minute) // a full anonymous budget
			b := tc.body()
			var rd io.Reader = strings.NewReader(b.content)
			if tc.chunked {
				rd = io.MultiReader(rd) // hides the length
			}
			r, _ := http.NewRequest("POST", e.srv.URL+"/public/x", rd)
			r.Header.Set("Content-Type", b.contentType)
			res := e.do(r)
			e.up.mu.Lock()
			got, gotErr := e.up.lastBody, e.up.lastBodyErr
			e.up.lastBody, e.up.lastBodyErr = "", nil
			e.up.mu.Unlock()
			if !tc.refused {
				if res.status != 200 || res.echo.Body != b.content {
					t.Fatalf("got %d and the upstream got %d bytes, want 200 and all %d", res.status, len(res.echo.Body), len(b.content))
				}
				return
			}
			if res.status != 400 || res.err.Error != "invalid_request" {
				t.Fatalf("got %d %.200s, want 400 invalid_request", res.status, res.body)
			}
			if strings.Contains(got, good) || got == b.content {
				t.Fatalf("the upstream got the token: %d of %d bytes", len(got), len(b.content))
			}
			if got != "" && gotErr == nil {
				t.Fatalf("the upstream read %d of %d bytes as a whole body", len(got), len(b.content))
			}
		})
	}
}
