package gateway

import (
	"strings"
	"testing"
)

// TestTokenInFormLegitClients: bodies legitimate clients send, with no
// access_token field: each must pass (200).
func TestTokenInFormLegitClients(t *testing.T) {
	e := newEnv(t, "")
	part := func(b string) string {
		return "--" + b + "\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nhello\r\n--" + b + "--\r\n"
	}
	for _, tc := range []struct{ name, contentType, body string }{
		{"Chrome/Safari boundary", "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", part("----WebKitFormBoundary7MA4YWxkTrZu0gW")},
		{"Firefox boundary", "multipart/form-data; boundary=----geckoformboundary1a2b3c4d5e6f", part("----geckoformboundary1a2b3c4d5e6f")},
		{"Alamofire boundary", "multipart/form-data; boundary=alamofire.boundary.1a2b3c4d5e6f7a8b", part("alamofire.boundary.1a2b3c4d5e6f7a8b")},
		{"Dart http boundary", "multipart/form-data; boundary=dart-http-boundary-AbCdEf0123456789", part("dart-http-boundary-AbCdEf0123456789")},
		{"Jersey boundary", "multipart/form-data; boundary=Boundary_1_1234567_1700000000000", part("Boundary_1_1234567_1700000000000")},
		{"JSON sent as a form that says Accept", "application/x-www-form-urlencoded", `{"headers":{"Accept":"text/html"},"query":"` + strings.Repeat("lorem ipsum ", 1000) + `"}`},
		{"JSON sent as a form with a percent", "application/x-www-form-urlencoded", `{"discount":"15%","query":"` + strings.Repeat("lorem ipsum ", 1000) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res, _ := e.postForm(tc.body, "Content-Type", tc.contentType); res.status != 200 {
				t.Errorf("got %d %s, want 200", res.status, res.err.Error)
			}
		})
	}
}
