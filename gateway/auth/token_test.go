package auth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// TestTokenChecks has one case per check of RFC 9068 §4 and spec §3.4, on
// tokens signed for real and sent as unbound Bearer tokens.
func TestTokenChecks(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "rsa", "RS256")
	ti.addKey(t, "ec", "ES256")
	v := newTestVerifier(t, ti)
	claims := func(mod func(c map[string]any)) map[string]any {
		c := ti.claims("", now)
		if mod != nil {
			mod(c)
		}
		return c
	}
	signed := func(kid string, mod func(c map[string]any)) func() string {
		return func() string { return ti.token(t, kid, claims(mod)) }
	}
	withHeader := func(kid string, mod func(h map[string]any)) func() string {
		return func() string {
			ti.mu.Lock()
			k, alg := ti.keys[kid], ti.algs[kid]
			ti.mu.Unlock()
			h := map[string]any{"alg": alg, "typ": "at+jwt", "kid": kid}
			mod(h)
			return signJWS(t, alg, k, h, claims(nil))
		}
	}
	rsaPublicPEM := func() []byte {
		ti.mu.Lock()
		k := ti.keys["rsa"]
		ti.mu.Unlock()
		der, _ := x509.MarshalPKIXPublicKey(k.Public())
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}

	for _, tc := range []struct {
		name   string
		token  func() string
		check  func(t *testing.T, p *Principal)
		code   Code
		reason Reason
	}{
		{"ok/RS256", signed("rsa", nil), func(t *testing.T, p *Principal) {
			if p.Issuer != ti.URL || p.Subject != "user-1" || p.ClientID != "agent-1" || p.Scope() != "listings:read tools:call" || p.JKT != "" {
				t.Fatalf("got %+v", p)
			}
		}, "", ""},
		{"ok/ES256", signed("ec", nil), nil, "", ""},
		{"ok/typ-application-at+jwt", withHeader("ec", func(h map[string]any) { h["typ"] = "application/at+jwt" }), nil, "", ""},
		{"ok/aud-array", signed("ec", func(c map[string]any) { c["aud"] = []string{"other", "https://api.example.com"} }), nil, "", ""},
		{"ok/azp-as-client", signed("ec", func(c map[string]any) { delete(c, "client_id"); c["azp"] = "azp-client" }), func(t *testing.T, p *Principal) {
			if p.ClientID != "azp-client" {
				t.Fatalf("got client %q, want azp-client", p.ClientID)
			}
		}, "", ""},
		{"ok/sub-as-client", signed("ec", func(c map[string]any) { delete(c, "client_id") }), func(t *testing.T, p *Principal) {
			if p.ClientID != "user-1" {
				t.Fatalf("got client %q, want user-1", p.ClientID)
			}
		}, "", ""},
		{"ok/scp-array", signed("ec", func(c map[string]any) { delete(c, "scope"); c["scp"] = []string{"a", "b"} }), func(t *testing.T, p *Principal) {
			if p.Scope() != "a b" {
				t.Fatalf("got scope %q, want \"a b\"", p.Scope())
			}
		}, "", ""},
		{"ok/tier-claim", signed("ec", func(c map[string]any) { c["tier"] = "business" }), func(t *testing.T, p *Principal) {
			if p.Tier != "business" {
				t.Fatalf("got tier %q, want business", p.Tier)
			}
		}, "", ""},
		{"ok/tier-not-a-string", signed("ec", func(c map[string]any) { c["tier"] = 7 }), func(t *testing.T, p *Principal) {
			if p.Tier != "" {
				t.Fatalf("got tier %q, want none", p.Tier)
			}
		}, "", ""},
		{"ok/exp-within-skew", signed("ec", func(c map[string]any) { c["exp"] = now.Add(-4 * time.Second).Unix() }), nil, "", ""},
		{"ok/nbf-within-skew", signed("ec", func(c map[string]any) { c["nbf"] = now.Add(4 * time.Second).Unix() }), nil, "", ""},

		{"fail/not-a-jwt", func() string { return "opaque-token-value" }, nil, InvalidToken, ReasonMalformedToken},
		{"fail/payload-not-json", func() string { return "eyJhbGciOiJFUzI1NiJ9.bm9wZQ.AAAA" }, nil, InvalidToken, ReasonMalformedToken},
		{"fail/unknown-issuer", signed("ec", func(c map[string]any) { c["iss"] = "https://evil.example.com" }), nil, InvalidToken, ReasonUnknownIssuer},
		{"fail/issuer-trailing-slash", signed("ec", func(c map[string]any) { c["iss"] = ti.URL + "/" }), nil, InvalidToken, ReasonUnknownIssuer},
		{"fail/alg-none", func() string {
			tok := ti.token(t, "ec", claims(nil))
			h := `{"alg":"none","typ":"at+jwt","kid":"ec"}`
			p := strings.Split(tok, ".")
			return b64(h) + "." + p[1] + "."
		}, nil, InvalidToken, ReasonMalformedToken},
		{"fail/alg-none-with-signature", func() string {
			tok := ti.token(t, "ec", claims(nil))
			p := strings.Split(tok, ".")
			return b64(`{"alg":"none","typ":"at+jwt","kid":"ec"}`) + "." + p[1] + "." + p[2]
		}, nil, InvalidToken, ReasonTokenAlg},
		{"fail/HS256-with-rsa-public-key", func() string {
			return signJWS(t, "HS256", rsaPublicPEM(), map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": "rsa"}, claims(nil))
		}, nil, InvalidToken, ReasonTokenAlg},
		{"fail/alg-not-allowed", withHeader("rsa", func(h map[string]any) { h["alg"] = "RS512" }), nil, InvalidToken, ReasonTokenAlg},
		{"fail/es256-header-on-rsa-key", withHeader("rsa", func(h map[string]any) { h["alg"] = "ES256" }), nil, InvalidToken, ReasonUnknownKID},
		{"fail/typ-missing", withHeader("ec", func(h map[string]any) { delete(h, "typ") }), nil, InvalidToken, ReasonTokenTyp},
		{"fail/typ-jwt", withHeader("ec", func(h map[string]any) { h["typ"] = "JWT" }), nil, InvalidToken, ReasonTokenTyp},
		{"fail/crit", withHeader("ec", func(h map[string]any) { h["crit"] = []string{"x"} }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/bad-signature", func() string {
			tok := ti.token(t, "ec", claims(nil))
			other := ti.token(t, "ec", claims(func(c map[string]any) { c["sub"] = "admin" }))
			p, q := strings.Split(tok, "."), strings.Split(other, ".")
			return p[0] + "." + q[1] + "." + p[2]
		}, nil, InvalidToken, ReasonTokenSignature},
		{"fail/signed-by-stranger", func() string {
			k := testKey(t, "ES256", "stranger")
			return signJWS(t, "ES256", k, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, claims(nil))
		}, nil, InvalidToken, ReasonTokenSignature},
		{"fail/missing-exp", signed("ec", func(c map[string]any) { delete(c, "exp") }), nil, InvalidToken, ReasonMissingExp},
		{"fail/expired", signed("ec", func(c map[string]any) { c["exp"] = now.Add(-6 * time.Second).Unix() }), nil, InvalidToken, ReasonExpired},
		{"fail/exp-string", signed("ec", func(c map[string]any) { c["exp"] = "tomorrow" }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/nbf-future", signed("ec", func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() }), nil, InvalidToken, ReasonNotYetValid},
		{"fail/iat-future", signed("ec", func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() }), nil, InvalidToken, ReasonIssuedInFuture},
		{"fail/wrong-aud", signed("ec", func(c map[string]any) { c["aud"] = "https://other.example.com" }), nil, InvalidToken, ReasonAudience},
		{"fail/no-aud", signed("ec", func(c map[string]any) { delete(c, "aud") }), nil, InvalidToken, ReasonAudience},
		{"fail/no-client", signed("ec", func(c map[string]any) { delete(c, "client_id"); delete(c, "sub") }), nil, InvalidToken, ReasonNoClient},
		// The subject and client go upstream as header values, which
		// cannot hold a control character, and whose surrounding spaces
		// the upstream's parser drops (" admin" would read as "admin").
		{"fail/sub-with-line-break", signed("ec", func(c map[string]any) { c["sub"] = "user\r\nX-Auth-Tier: business" }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/sub-with-nul", signed("ec", func(c map[string]any) { c["sub"] = "user\x00" }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/sub-with-leading-space", signed("ec", func(c map[string]any) { c["sub"] = " admin" }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/client-id-with-tab", signed("ec", func(c map[string]any) { c["client_id"] = "agent\t1" }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/azp-with-trailing-space", signed("ec", func(c map[string]any) { delete(c, "client_id"); c["azp"] = "agent-1 " }), nil, InvalidToken, ReasonMalformedToken},
		{"ok/sub-with-inner-space-and-utf8", signed("ec", func(c map[string]any) { c["sub"] = "Zoë Ng" }), func(t *testing.T, p *Principal) {
			if p.Subject != "Zoë Ng" {
				t.Fatalf("subject %q", p.Subject)
			}
		}, "", ""},
		{"fail/cnf-x5t", signed("ec", func(c map[string]any) { c["cnf"] = map[string]any{"x5t#S256": "abc"} }), nil, InvalidToken, ReasonUnsupportedCnf},
		// RFC 7800 §3.1: cnf represents a single proof-of-possession key; a
		// token also bound to a certificate (RFC 8705) or a key id whose
		// possession we cannot check is refused, as one bound by x5t alone.
		{"fail/cnf-jkt-and-x5t", func() string {
			return ti.token(t, "ec", claims(func(c map[string]any) {
				c["cnf"] = map[string]any{"jkt": strings.Repeat("A", 43), "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
			}))
		}, nil, InvalidToken, ReasonUnsupportedCnf},
		{"fail/cnf-jkt-and-kid", func() string {
			return ti.token(t, "ec", claims(func(c map[string]any) { c["cnf"] = map[string]any{"jkt": strings.Repeat("A", 43), "kid": "k"} }))
		}, nil, InvalidToken, ReasonUnsupportedCnf},
		{"fail/cnf-jkt-short", signed("ec", func(c map[string]any) { c["cnf"] = map[string]any{"jkt": "abc"} }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/scp-object", signed("ec", func(c map[string]any) { delete(c, "scope"); c["scp"] = map[string]any{} }), nil, InvalidToken, ReasonMalformedToken},
		{"fail/unknown-kid", withHeader("ec", func(h map[string]any) { h["kid"] = "nope" }), nil, InvalidToken, ReasonUnknownKID},
		// RFC 6749 §3.3 and RFC 8693 §4.2: scope values are separated by
		// SP; a tab or a Unicode space is part of one (malformed) value and
		// grants none of the scopes it seems to hold.
		{"fail/scope-split-on-nbsp", signed("ec", func(c map[string]any) { c["scope"] = "listings:read\u00a0tools:call" }), func(t *testing.T, p *Principal) {
			if len(p.MissingScopes([]string{"tools:call"})) == 0 || len(p.MissingScopes([]string{"listings:read"})) == 0 {
				t.Fatalf("got scopes %q from one value holding a no-break space", p.Scopes)
			}
		}, "", ""},
		{"fail/scope-split-on-tab", signed("ec", func(c map[string]any) { c["scope"] = "listings:read\ttools:call" }), func(t *testing.T, p *Principal) {
			if len(p.MissingScopes([]string{"tools:call"})) == 0 {
				t.Fatalf("got scopes %q from one value holding a tab", p.Scopes)
			}
		}, "", ""},
		{"fail/scp-string-split-on-line-separator", signed("ec", func(c map[string]any) { delete(c, "scope"); c["scp"] = "a\u2028tools:call" }), func(t *testing.T, p *Principal) {
			if len(p.MissingScopes([]string{"tools:call"})) == 0 {
				t.Fatalf("got scopes %q from one value holding U+2028", p.Scopes)
			}
		}, "", ""},
		{"ok/scope-double-space", signed("ec", func(c map[string]any) { c["scope"] = " listings:read  tools:call " }), func(t *testing.T, p *Principal) {
			if p.Scope() != "listings:read tools:call" {
				t.Fatalf("got scope %q, want \"listings:read tools:call\"", p.Scope())
			}
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token()
			res, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + tok}, Now: now})
			noLeak(t, err, tok)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if tc.check != nil {
					tc.check(t, res.Principal)
				}
				return
			}
			wantCode(t, err, tc.code, tc.reason)
			if e := AsError(err); e.Scheme != "Bearer" {
				t.Fatalf("got scheme %q, want Bearer", e.Scheme)
			}
		})
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestSchemes covers §3.3 and the binding rules of RFC 9449 §7.
func TestSchemes(t *testing.T) {
	now := testNow
	ti, v, pk, bound := boundSetup(t, "ES256")
	unbound := ti.token(t, "k1", ti.claims("", now))
	proof := func(tok string) []string { return []string{pk.proof(t, "POST", testURL, tok, now)} }
	certToo := ti.claims(pk.jkt, now)
	certToo["cnf"] = map[string]any{"jkt": pk.jkt, "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
	boundToCertToo := ti.token(t, "k1", certToo)

	for _, tc := range []struct {
		name        string
		auth        []string
		dpop        []string
		requireDPoP bool
		code        Code
		reason      Reason
		scheme      string
	}{
		{"ok/anonymous", nil, nil, false, "", "", ""},
		{"ok/anonymous-with-stray-proof", nil, proof(bound), true, "", "", ""},
		{"ok/dpop", []string{"DPoP " + bound}, proof(bound), true, "", "", "DPoP"},
		{"ok/dpop-scheme-case", []string{"dpop " + bound}, proof(bound), true, "", "", "DPoP"},
		{"ok/bearer-unbound", []string{"Bearer " + unbound}, nil, false, "", "", "Bearer"},
		{"fail/two-authorization", []string{"DPoP " + bound, "DPoP " + bound}, proof(bound), false, InvalidRequest, ReasonMultipleAuthorization, ""},
		{"fail/basic", []string{"Basic dXNlcjpwYXNz"}, nil, false, InvalidToken, ReasonUnsupportedScheme, ""},
		{"fail/scheme-not-a-token", []string{"DPoP\t" + bound}, proof(bound), false, InvalidRequest, ReasonMalformedAuthorization, ""},
		{"fail/scheme-only", []string{"DPoP"}, proof(bound), false, InvalidRequest, ReasonMalformedAuthorization, "DPoP"},
		{"fail/two-tokens", []string{"DPoP " + bound + " " + bound}, proof(bound), false, InvalidRequest, ReasonMalformedAuthorization, "DPoP"},
		{"fail/comma-list", []string{"DPoP " + bound + ", Bearer x"}, proof(bound), false, InvalidRequest, ReasonMalformedAuthorization, "DPoP"},
		{"fail/too-large", []string{"DPoP " + strings.Repeat("a", 9000)}, nil, false, InvalidRequest, ReasonCredentialTooLarge, ""},
		{"fail/bearer-downgrade", []string{"Bearer " + bound}, nil, false, InvalidToken, ReasonBearerDowngrade, "Bearer"},
		{"fail/bearer-downgrade-with-proof", []string{"Bearer " + bound}, proof(bound), false, InvalidToken, ReasonBearerDowngrade, "Bearer"},
		{"fail/bearer-on-dpop-route", []string{"Bearer " + unbound}, nil, true, InvalidToken, ReasonBearerRefused, "DPoP"},
		{"fail/dpop-with-unbound-token", []string{"DPoP " + unbound}, proof(unbound), false, InvalidToken, ReasonUnboundDPoP, "DPoP"},
		{"fail/dpop-token-also-bound-to-a-certificate", []string{"DPoP " + boundToCertToo}, proof(boundToCertToo), false, InvalidToken, ReasonUnsupportedCnf, "DPoP"},
		{"fail/dpop-without-proof", []string{"DPoP " + bound}, nil, false, InvalidDPoPProof, ReasonMissingProof, "DPoP"},
		{"fail/proof-too-large", []string{"DPoP " + bound}, []string{strings.Repeat("a", 9000)}, false, InvalidDPoPProof, ReasonMalformedProof, "DPoP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.Verify(bg, Request{Method: "POST", URL: testURL, Authorization: tc.auth, DPoP: tc.dpop, RequireDPoP: tc.requireDPoP, Now: now})
			if tc.code == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if res.Scheme != tc.scheme || (tc.scheme == "") != (res.Principal == nil) {
					t.Fatalf("got scheme %q principal %v, want scheme %q", res.Scheme, res.Principal, tc.scheme)
				}
				return
			}
			wantCode(t, err, tc.code, tc.reason)
			if e := AsError(err); e.Scheme != tc.scheme {
				t.Fatalf("got challenge scheme %q, want %q", e.Scheme, tc.scheme)
			}
		})
	}
}
