package dpopclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Transport is an http.RoundTripper that sends every request with a fresh
// DPoP proof (RFC 9449 §4) and, when it has a token, the header
// "Authorization: DPoP <token>" and the proof's ath. When a server answers
// use_dpop_nonce (a resource server's 401, RFC 9449 §9; an authorization
// server's 400, §8) it retries once with the nonce, and it remembers the
// latest DPoP-Nonce of each origin for the requests that follow.
//
// Its zero value is not usable: set Key. Safe for concurrent use.
type Transport struct {
	Key *Key
	// Token is the access token to send; "" sends only the proof (a token
	// request to an authorization server).
	Token string
	// Base carries the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// Clock gives the proofs' iat; nil means time.Now.
	Clock func() time.Time

	mu     sync.Mutex
	nonces map[string]string // origin -> last DPoP-Nonce seen
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Key == nil {
		return nil, errors.New("dpopclient: Transport has no Key")
	}
	origin := req.URL.Scheme + "://" + req.URL.Host
	resp, err := t.send(req, t.nonce(origin))
	if err != nil {
		return nil, err
	}
	n := resp.Header.Get("DPoP-Nonce")
	if n == "" {
		return resp, nil
	}
	t.remember(origin, n)
	if !asksForNonce(resp) {
		return resp, nil
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil // cannot replay the body: let the caller see the 401
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return t.send(req, n)
}

func (t *Transport) send(req *http.Request, nonce string) (*http.Response, error) {
	now := time.Now
	if t.Clock != nil {
		now = t.Clock
	}
	proof, err := t.Key.Proof(req.Method, req.URL.String(), t.Token, nonce, now())
	if err != nil {
		return nil, fmt.Errorf("dpopclient: signing a proof: %w", err)
	}
	out := req.Clone(req.Context())
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		if out.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	out.Header.Set("DPoP", proof)
	if t.Token != "" {
		out.Header.Set("Authorization", "DPoP "+t.Token)
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(out)
}

func (t *Transport) nonce(origin string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nonces[origin]
}

func (t *Transport) remember(origin, nonce string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nonces == nil {
		t.nonces = make(map[string]string)
	}
	t.nonces[origin] = nonce
}

// asksForNonce reports a use_dpop_nonce answer: a 401 whose challenge says
// so, or a 400 whose JSON body does.
func asksForNonce(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		for _, c := range resp.Header.Values("WWW-Authenticate") {
			if strings.Contains(c, `error="use_dpop_nonce"`) {
				return true
			}
		}
	case http.StatusBadRequest:
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		var e struct {
			Error string `json:"error"`
		}
		return err == nil && json.Unmarshal(b, &e) == nil && e.Error == "use_dpop_nonce"
	}
	return false
}
