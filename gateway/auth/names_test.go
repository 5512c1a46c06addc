package auth

import (
	"encoding/json"
	"strings"
	"testing"
)

// jsonText marshals m and then renames (and, with suffix, extends) its
// members by plain text replacement, for spellings a map cannot order.
func jsonText(t testing.TB, m map[string]any, replace ...string) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(replace...).Replace(string(b))
}

// TestProofMemberNamesExact: JSON member names are case-sensitive (RFC 8259
// §4, RFC 7515 §4, RFC 7519 §4). A proof whose header or payload spells a
// required member otherwise does not contain it (RFC 9449 §4.3 item 3), and
// a member that only folds to a required name must not stand in for, or
// override, the real one: another parser reading the same proof would see
// another htm or htu.
func TestProofMemberNamesExact(t *testing.T) {
	now := testNow
	_, v, pk, token := boundSetup(t, "ES256")

	// proof signs the valid header and claims after text replacements on
	// each (pairs, as for strings.NewReplacer).
	proof := func(hrep, crep []string) string {
		h, c := pk.proofParts("POST", testURL, token, now)
		return signRawJWS(t, pk.alg, pk.priv, jsonText(t, h, hrep...), jsonText(t, c, crep...))
	}
	for _, tc := range []struct {
		name   string
		proof  func() string
		reason Reason // "" for any invalid_dpop_proof
	}{
		{"fail/typ-spelled-TYP", func() string { return proof([]string{`"typ":`, `"TYP":`}, nil) }, ReasonMissingClaim},
		{"fail/jwk-spelled-with-kelvin-sign", func() string { return proof([]string{`"jwk":`, "\"jw\u212a\":"}, nil) }, ReasonMissingClaim},
		{"fail/htm-spelled-HTM", func() string { return proof(nil, []string{`"htm":`, `"HTM":`}) }, ReasonMissingClaim},
		{"fail/ath-spelled-Ath", func() string { return proof(nil, []string{`"ath":`, `"Ath":`}) }, ReasonMissingClaim},
		// htm is GET; a later "HTM" says POST, the request's method.
		{"fail/htm-shadowed-by-HTM", func() string {
			return proof(nil, []string{`"htm":"POST"`, `"htm":"GET"`, `"jti":`, `"HTM":"POST","jti":`})
		}, ""},
		// htu names another resource; a later "HTU" names this one.
		{"fail/htu-shadowed-by-HTU", func() string {
			return proof(nil, []string{`"htu":"` + testURL + `"`, `"htu":"https://api.example.com/tools/delete"`, `"iat":`, `"HTU":"` + testURL + `","iat":`})
		}, ""},
		// One member twice: parsers that keep the first and those that keep
		// the last would read two htm; RFC 7515 §5.2 lets us refuse it.
		{"fail/htm-twice", func() string { return proof(nil, []string{`"jti":`, `"htm":"GET","jti":`}) }, ReasonMalformedProof},
		{"fail/typ-twice", func() string { return proof([]string{`"alg":`, `"typ":"jwt","alg":`}, nil) }, ReasonMalformedProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.proof()
			_, err := v.Verify(bg, dpopRequest(token, p, now))
			if tc.reason != "" {
				wantCode(t, err, InvalidDPoPProof, tc.reason)
				return
			}
			if e := AsError(err); e == nil || e.Code != InvalidDPoPProof {
				t.Fatalf("got %v, want invalid_dpop_proof", err)
			}
		})
	}
}

// TestTokenClaimNamesExact: the same for access-token claims (RFC 7519 §4,
// RFC 9068 §4). A member that merely folds to aud, cnf or exp must not be
// read as that claim: the issuer and every other reader of the token see
// the real one.
func TestTokenClaimNamesExact(t *testing.T) {
	now := testNow
	ti := newTestIssuer(t)
	ti.addKey(t, "ec", "ES256")
	v := newTestVerifier(t, ti)
	pk := newProofKey(t, "ES256", "client")
	token := func(c map[string]any, rep ...string) string {
		ti.mu.Lock()
		k := ti.keys["ec"]
		ti.mu.Unlock()
		return signRawJWS(t, "ES256", k, `{"alg":"ES256","kid":"ec","typ":"at+jwt"}`, jsonText(t, c, rep...))
	}
	for _, tc := range []struct {
		name   string
		token  func() string
		reason Reason
	}{
		// aud names another resource; a later "AUD" names ours.
		{"fail/aud-shadowed-by-AUD", func() string {
			c := ti.claims("", now)
			c["aud"] = "https://other.example.com"
			return token(c, `"client_id":`, `"AUD":"https://api.example.com","client_id":`)
		}, ReasonAudience},
		// A DPoP-bound token (cnf.jkt) that also carries "CNF": null is
		// still bound: sent as Bearer it is a downgrade (RFC 9449 §7.2).
		{"fail/cnf-shadowed-by-CNF-null", func() string {
			return token(ti.claims(pk.jkt, now), `"exp":`, `"CNF":null,"exp":`)
		}, ReasonBearerDowngrade},
		// No exp, only "EXP" (RFC 9068 §2.2 requires exp).
		{"fail/exp-spelled-EXP", func() string {
			return token(ti.claims("", now), `"exp":`, `"EXP":`)
		}, ReasonMissingExp},
		{"fail/aud-twice", func() string {
			return token(ti.claims("", now), `"client_id":`, `"aud":"https://other.example.com","client_id":`)
		}, ReasonMalformedToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token()
			_, err := v.Verify(bg, Request{Method: "GET", URL: testURL, Authorization: []string{"Bearer " + tok}, Now: now})
			wantCode(t, err, InvalidToken, tc.reason)
		})
	}
}
