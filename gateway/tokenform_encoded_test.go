package gateway

import (
	"strings"
	"testing"
)

// TestTokenInFormEncodedWordNames: RFC 2047 encoded-word part names, which
// Commons FileUpload (Tomcat, Spring: ParameterParser, MimeUtility.decodeText,
// B and Q) and ASP.NET Core (ContentDispositionHeaderValue, B) decode to
// access_token (from their source, by a fourth review: neither runs here).
func TestTokenInFormEncodedWordNames(t *testing.T) {
	e := newEnv(t, "")
	good := e.token(nil)
	for _, name := range []string{
		`"=?UTF-8?B?YWNjZXNzX3Rva2Vu?="`,              // base64("access_token")
		`=?utf-8?b?YWNjZXNzX3Rva2Vu?=`,                // unquoted, lower case
		`"=?UTF-8?Q?access=5Ftoken?="`,                // Q: =5F is '_'
		`"=?US-ASCII?Q?=61ccess=5Ftoken?="`,           // Q, no letter run
		`"=?UTF-8?B?YWNjZXNz?= =?UTF-8?B?X3Rva2Vu?="`, // two words, joined
		`"=?x-unknown?B?YWNjZXNzX3Rva2Vu?="`,          // a charset Go does not know
	} {
		t.Run(name, func(t *testing.T) {
			body := "--BBB\r\nContent-Disposition: form-data; name=" + name + "\r\n\r\n" + good + "\r\n--BBB--\r\n"
			res, got := e.postForm(body, "Content-Type", "multipart/form-data; boundary=BBB")
			if res.status != 400 || strings.Contains(got, good) {
				t.Errorf("got %d, upstream got the token: %v; want 400", res.status, strings.Contains(got, good))
			}
		})
	}
}
