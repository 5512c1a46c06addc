package auth

import (
	"encoding/json"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// TestProofRSAPrivateMembers: "the jwk JOSE Header Parameter does not
// contain a private key" (RFC 9449 §4.3 item 7). For RSA the private
// members are d, p, q, dp, dq, qi and oth (RFC 7518 §6.3.2); the prime
// factors alone are the whole private key, with or without d.
func TestProofRSAPrivateMembers(t *testing.T) {
	now := testNow
	_, v, pk, token := boundSetup(t, "RS256")
	priv, err := jwk.FromRaw(pk.priv)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(priv)
	var full map[string]any
	json.Unmarshal(b, &full)

	for _, tc := range []struct {
		name    string
		members []string // private members added to the public JWK
	}{
		{"fail/d", []string{"d"}},
		{"fail/p-q", []string{"p", "q"}},
		{"fail/dp-dq-qi", []string{"dp", "dq", "qi"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := map[string]any{}
			for k, v := range pk.jwk {
				j[k] = v
			}
			for _, m := range tc.members {
				j[m] = full[m]
			}
			h, c := pk.proofParts("POST", testURL, token, now)
			h["jwk"] = j
			_, err := v.Verify(bg, dpopRequest(token, signJWS(t, pk.alg, pk.priv, h, c), now))
			wantCode(t, err, InvalidDPoPProof, ReasonPrivateJWK)
		})
	}
}
