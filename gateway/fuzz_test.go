package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzGateway sends arbitrary HTTP/1.1 requests over TCP through the whole
// request path (routing, forward auth, forwarding headers, credentials,
// CORS, rate limits, the proxy), from a trusted proxy or from anywhere.
// Whatever comes in:
//   - an answer comes back, and the handler returns (no hang);
//   - an answer the gateway wrote itself is one of spec §4's: a JSON body
//     whose error code has that status, Cache-Control: no-store, a
//     challenge on 401 and Retry-After on 429; or a 200 (forward auth,
//     metadata) or 204 (preflight);
//   - the upstream never sees the credentials, nor an identity the request
//     did not prove;
//   - the request's log line does not hold its credentials.
func FuzzGateway(f *testing.F) {
	log := &fuzzLog{}
	e := startEnv(f, "  auth_failures: {rate: 100000000/m}",
		forwardAuthConfig(false)+"server:\n  trusted_proxies: [10.0.0.0/8]\n", log)
	h := &fuzzHandler{gw: e.gw}
	srv := httptest.NewServer(h)
	f.Cleanup(srv.Close)

	token := e.token(nil)
	seed := func(r *http.Request, trusted bool) {
		raw, err := httputil.DumpRequest(r, true)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, trusted)
	}
	r := e.dpop(e.req("POST", "/tools/x?q=1"), token)
	r.Host = strings.TrimPrefix(e.srv.URL, "http://")
	seed(r, false)
	seed(e.req("GET", "/public/a", "X-Auth-Subject", "root", "X-Forwarded-For", "1.2.3.4, 10.0.0.9"), true)
	seed(e.req("OPTIONS", "/tools/x", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST"), false)
	seed(e.req("GET", "/auth", "X-Original-Method", "GET", "X-Original-URL", "https://api.example.com/public/x"), true)
	seed(e.req("GET", "/auth/public/x?y", "X-Forwarded-Proto", "https", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/x?y"), true)
	seed(e.req("POST", "/public/form", "Content-Type", "application/x-www-form-urlencoded"), false)
	seed(e.req("GET", "/public/%2e%2e/x;a", "Authorization", "Bearer a.b.c", "Authorization", "DPoP x", "DPoP", "a.b.c"), false)
	seed(e.req("GET", "/.well-known/oauth-protected-resource/tools"), true)
	f.Add([]byte("POST /public/f HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 18\r\n\r\naccess_token=abcde"), false)
	f.Add([]byte("GET /hang HTTP/1.1\r\nHost: x\r\nX-Request-Id: r-1\r\n\r\n"), true)

	f.Fuzz(func(t *testing.T, raw []byte, trusted bool) {
		br := bufio.NewReader(bytes.NewReader(raw))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil || req.ContentLength < 0 && len(body) > 0 {
			return // a truncated or chunked body: the server would wait for more
		}
		n := len(raw) - br.Buffered() // one whole request, nothing pipelined after it
		sent := req.Header.Clone()

		peer := "192.0.2.7:40000"
		if trusted {
			peer = "10.0.0.1:40000"
		}
		log.reset()
		h.expect(peer)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Closed with a reset: a million inputs must not leave a million
		// connections in TIME_WAIT, holding the loopback's ports.
		conn.(*net.TCPConn).SetLinger(0)
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(raw[:n]); err != nil {
			t.Fatal(err)
		}
		resp, answer := readAnswer(t, bufio.NewReader(conn), req)
		if !h.finished() {
			return // net/http refused the request itself; the gateway never saw it
		}
		var echo echo
		switch {
		case resp.Header.Get(upstreamMark) == "":
			checkAnswer(t, resp, answer)
		case json.Unmarshal(answer, &echo) == nil && echo.Method != "":
			checkForwarded(t, echo.Header, sent, token)
		}
		for _, v := range append(sent.Values("Authorization"), sent.Values("DPoP")...) {
			if len(v) >= 16 && !strings.Contains(req.RequestURI, v) && strings.Contains(log.String(), v) {
				t.Fatalf("the log holds a credential: %s", log.String())
			}
		}
	})
}

// readAnswer reads the answer to req, skipping 1xx, and its body.
func readAnswer(t *testing.T, br *bufio.Reader, req *http.Request) (*http.Response, []byte) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, body
		}
	}
}

// checkAnswer checks an answer the gateway wrote itself.
func checkAnswer(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
		return
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || statusOf[e.Error] != resp.StatusCode {
		t.Fatalf("answer %d %q is none of spec §4's", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("answer %d without Cache-Control: no-store", resp.StatusCode)
	}
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("401 without a challenge: %q", body)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 0 {
			t.Fatalf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
		}
	}
}

// checkForwarded checks the fields the upstream got for a request that
// carried the fields sent: no credentials, and an identity only when the
// request carried the env's token.
func checkForwarded(t *testing.T, got, sent http.Header, token string) {
	t.Helper()
	for _, k := range []string{"Authorization", "Dpop"} {
		if len(got.Values(k)) > 0 {
			t.Fatalf("the upstream got %s", k)
		}
	}
	proven := strings.Contains(strings.Join(sent.Values("Authorization"), " "), token)
	for _, k := range []string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Scope", "X-Auth-Issuer", "X-Auth-Jkt"} {
		v := got.Values(k)
		if len(v) > 1 || len(v) == 1 && !proven {
			t.Fatalf("the upstream got %s %q for a request that proved no identity", k, v)
		}
	}
	if v := got.Values("X-Auth-Client-Id"); len(v) == 1 && v[0] != "agent-1" {
		t.Fatalf("the upstream got X-Auth-Client-Id %q", v[0])
	}
}

// fuzzHandler serves the gateway as if from the peer the fuzz input names,
// and tells when the gateway has returned from a request.
type fuzzHandler struct {
	gw   *Gateway
	mu   sync.Mutex
	peer string
	done chan struct{} // closed when the gateway returned
	seen bool          // the gateway was called
}

func (h *fuzzHandler) expect(peer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peer, h.done, h.seen = peer, make(chan struct{}), false
}

func (h *fuzzHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	r.RemoteAddr, h.seen = h.peer, true
	done := h.done
	h.mu.Unlock()
	defer close(done)
	h.gw.ServeHTTP(w, r)
}

// finished reports whether the gateway saw the request, waiting until it
// has returned when it did. The answer has been read: a gateway still
// running after it is a hang.
func (h *fuzzHandler) finished() bool {
	h.mu.Lock()
	seen, done := h.seen, h.done
	h.mu.Unlock()
	if !seen {
		return false
	}
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		panic("the gateway did not return after answering")
	}
}

// fuzzLog holds the log lines of one fuzz input.
type fuzzLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *fuzzLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *fuzzLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *fuzzLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// FuzzClientIP checks clientIP against the rule of spec §3.2 written the
// plain way: from a trusted peer, the rightmost X-Forwarded-For hop that is
// not a trusted proxy, all fields joined, a hop's port ignored; a malformed
// hop ends the walk.
func FuzzClientIP(f *testing.F) {
	tp := trustedProxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	f.Add("10.0.0.1:5000", "6.6.6.6, 198.51.100.9, 10.1.1.1", "")
	f.Add("[2001:db8::1]:80", "2001:db8::7", "::ffff:10.0.0.2 ,192.0.2.1")
	f.Add("10.9.9.9", " 10.0.0.3,,x", "[::1]")
	f.Add("203.0.113.7:1", "1.2.3.4", "10.0.0.1")
	f.Add("10.0.0.1:5000", "6.6.6.6, 198.51.100.9:4711", "[2001:db8::7]:80, 10.1.1.1:443")
	f.Add("10.0.0.1:5000", "[2001:db8::7]", "[10.1.1.1]:80")
	f.Fuzz(func(t *testing.T, peer, xff1, xff2 string) {
		r := &http.Request{RemoteAddr: peer, Header: http.Header{}}
		var hops []string
		for _, v := range []string{xff1, xff2} {
			if v != "" {
				r.Header.Add("X-Forwarded-For", v)
				hops = append(hops, strings.Split(v, ",")...)
			}
		}
		got, gotTrusted := tp.clientIP(r)

		want, wantTrusted := peerAddr(r), false
		if want.IsValid() && tp.contains(want) {
			wantTrusted = true
			for i := len(hops) - 1; i >= 0; i-- {
				a, ok := plainHop(strings.TrimSpace(hops[i]))
				if !ok {
					break
				}
				want = a.Unmap()
				if !tp.contains(want) {
					break
				}
			}
		}
		if got != want || gotTrusted != wantTrusted {
			t.Fatalf("peer %q, X-Forwarded-For %q %q: got %v (%v), want %v (%v)", peer, xff1, xff2, got, gotTrusted, want, wantTrusted)
		}
	})
}

// plainHop reads an X-Forwarded-For hop the plain way: an address, an
// address and a port (the address in brackets when it is IPv6), or an
// IPv6 address in brackets; in these two forms, without a zone.
func plainHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	bracketed := strings.HasPrefix(s, "[")
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !bracketed || !strings.HasSuffix(s, "]") {
			return netip.Addr{}, false
		}
		host, port = s[1:len(s)-1], "0"
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	return a, err == nil && bracketed == a.Is6() && a.Zone() == ""
}

// FuzzTokenInForm checks that looking for a token in a form body (a POST)
// finds every field url.ParseQuery would read (with ';' read as '&' too)
// whose name is access_token in any case, with '.', ' ' or '[' for '_': in
// the first maxFormPeek bytes before the request goes on, past them as
// the body is read; and that a body with no such field is handed on
// unchanged.
func FuzzTokenInForm(f *testing.F) {
	f.Add("a=1&access_token=x", "application/x-www-form-urlencoded")
	f.Add("access_token", "application/x-www-form-urlencoded; charset=utf-8")
	f.Add("x=%zz&access_token_2=1", "APPLICATION/X-WWW-FORM-URLENCODED")
	f.Add(`{"access_token":"x"}`, "application/json")
	f.Add("access%5Ftoken=x", "application/x-www-form-urlencoded")
	f.Add("a=1;%61ccess_token=x", "application/x-www-form-urlencoded")
	f.Add("b=2& Access.Token=x", "application/x-www-form-urlencoded")
	f.Add("--b\r\nContent-Disposition: form-data; name=\"access_token[]\"\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b")
	f.Add("[access_token]=x", "application/x-www-form-urlencoded, text/plain")
	f.Add("pad="+strings.Repeat("x", maxFormPeek)+"&access_token=x", "application/x-www-form-urlencoded")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		found := tokenInForm(r)
		rest, err := io.ReadAll(r.Body)
		switch {
		case found:
			// Refused before the body went anywhere.
		case errors.Is(err, errTokenInBody):
			if len(body) <= maxFormPeek || !strings.HasPrefix(body, string(rest)) || len(rest) == len(body) {
				t.Fatalf("a token found as the body streamed, after %d of %d bytes", len(rest), len(body))
			}
			found = true
		case err != nil || string(rest) != body:
			t.Fatalf("the body changed: %q, want %q (%v)", rest, body, err)
		}
		switch mt := formMediaType(contentType); {
		case strings.IndexFunc(contentType, func(r rune) bool { return r >= 0x80 }) >= 0:
			return // refused as it stands
		case strings.HasPrefix(mt, "multipart/"), containsFoldASCII(contentType, "multipart"):
			return // FuzzFormScanner checks multipart bodies
		case mt == "application/x-www-form-urlencoded", mt == "", containsFoldASCII(contentType, "urlencoded"):
			// mt == "": a POST, which Rack reads as a form.
			if !utf8Charset(contentType) {
				return // refused as it stands
			}
		default:
			if found {
				t.Fatalf("found a token in a %q body", contentType)
			}
			return
		}
		if name, ok := parsedTokenField(body); ok && !found {
			t.Fatalf("missed the field %q in %q", name, body)
		}
		if found && !containsFoldASCII(body, "acce") && !strings.Contains(body, "%") && !hasLongName(body) {
			t.Fatalf("found an access_token in %q", body)
		}
	})
}

// parsedTokenField is a field of form, as url.ParseQuery reads it with ';'
// read as '&' too, whose name is access_token in any case, with '.', ' '
// or '[' for '_' and leading spaces: the reference the form fuzz targets
// check against.
func parsedTokenField(form string) (string, bool) {
	q, _ := url.ParseQuery(strings.ReplaceAll(form, ";", "&"))
	for name := range q {
		if n := strings.NewReplacer(".", "_", " ", "_", "[", "_").Replace(strings.TrimLeft(name, " ")); strings.ToLower(n) == "access_token" {
			return name, true
		}
	}
	return "", false
}

// hasLongName reports a field in a form longer than maxFieldName.
func hasLongName(form string) bool {
	for _, field := range strings.FieldsFunc(form, func(r rune) bool { return r == '&' || r == ';' }) {
		if name, _, _ := strings.Cut(field, "="); len(name) > maxFieldName {
			return true
		}
	}
	return false
}

// FuzzFormScanner checks that a form scanner fed a body in pieces (each
// cut a byte of cuts long) answers as when fed it whole, and that it
// finds every field named as access_token that url.ParseQuery, or Go's
// multipart.Reader, reads in it.
func FuzzFormScanner(f *testing.F) {
	f.Add("a=1&access_token=x", false, []byte{1, 2, 3})
	f.Add("a=1&"+strings.Repeat("b", maxFieldName)+"=2", false, []byte{200})
	f.Add("--b\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\nx\r\n--b--\r\n", true, []byte{3})
	f.Add("--b\r\nContent-Disposition: form-data; name=a\r\n\r\n\n--b\nContent-Disposition: attachment;\n name=ACCESS_TOKEN\n\nx", true, []byte{1})
	f.Add("--b--\r\n\r\n--b\r\nContent-Disposition: form-data; name=access_token\r\n\r\n", true, []byte{7, 1})
	f.Fuzz(func(t *testing.T, body string, isMultipart bool, cuts []byte) {
		scanner := func() formScanner {
			if isMultipart {
				return newMultipartScanner("b")
			}
			return &queryScanner{}
		}
		whole := scanner()
		want := whole.scan([]byte(body)) || whole.end()
		pieces, got, rest := scanner(), false, body
		for i := 0; rest != "" && !got; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, max(1, int(cuts[i%len(cuts)])))
			}
			got = pieces.scan([]byte(rest[:n]))
			rest = rest[n:]
		}
		got = got || pieces.end()
		if got != want {
			t.Fatalf("in pieces %v: %v, whole: %v", cuts, got, want)
		}
		if !isMultipart {
			if name, ok := parsedTokenField(body); ok && !want {
				t.Fatalf("missed the field %q in %q", name, body)
			}
			return
		}
		mr := multipart.NewReader(strings.NewReader(body), "b")
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			if tokenName(p.FormName()) && !want {
				t.Fatalf("missed the part %q in %q", p.FormName(), body)
			}
		}
	})
}

// FuzzMultipartBoundaries checks that the boundaries looked for in a
// multipart body include Go's and PHP's, unless the Content-Type is
// refused, which only an RFC 2231 boundary*, a crowd of candidates, or a
// quoted boundary with a backslash or '%' is.
func FuzzMultipartBoundaries(f *testing.F) {
	f.Add(`multipart/form-data; boundary="a b"`)
	f.Add("multipart/form-data; xboundary=a; BOUNDARY=b")
	f.Add("multipart/form-data; boundary_x=a")
	f.Add("multipart/form-data; boundary= a, b")
	f.Add("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW")
	f.Add(`multipart/form-data; boundary*=utf-8''a; boundary="a\"b"`)
	f.Fuzz(func(t *testing.T, ct string) {
		boundaries, ok := multipartBoundaries(ct)
		if !ok {
			if i := indexFoldASCII(ct, "boundary*"); i < 0 && strings.Count(strings.ToLower(ct), "boundary") < 3 && !strings.ContainsAny(ct, `\%`) {
				t.Fatalf("%q refused", ct)
			}
			return
		}
		_, params, err := mime.ParseMediaType(ct)
		for _, want := range []string{params["boundary"], phpBoundary(ct)} {
			if err != nil && want == params["boundary"] {
				continue
			}
			if want != "" && !slices.Contains(boundaries, want) {
				t.Fatalf("%q: boundaries %q, want %q among them", ct, boundaries, want)
			}
		}
	})
}

// phpBoundary is the boundary PHP 8 takes from a multipart Content-Type
// (main/rfc1867.c), or "".
func phpBoundary(ct string) string {
	i := strings.Index(ct, "boundary")
	if i < 0 {
		i = indexFoldASCII(ct, "boundary") // zend_str_tolower: ASCII only
	}
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(ct[i:], '=')
	if j < 0 {
		return ""
	}
	b := ct[i+j+1:]
	if strings.HasPrefix(b, `"`) {
		end := strings.IndexByte(b[1:], '"')
		if end < 0 {
			return ""
		}
		return b[1 : 1+end]
	}
	if end := strings.IndexAny(b, ",;"); end >= 0 {
		b = b[:end]
	}
	return b
}
