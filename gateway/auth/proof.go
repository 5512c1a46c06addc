package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// maxJTILen bounds the jti we store for replay detection; RFC 9449 §4.2 asks
// for at least 96 bits of randomness, which fits many times over.
const maxJTILen = 256

// Proof is what a DPoP proof that passed every check tells the caller.
type Proof struct {
	JKT      string    // RFC 7638 SHA-256 thumbprint of the proof key, base64url
	JTI      string    // the proof's unique identifier
	IssuedAt time.Time // iat
	// ReplayKey identifies (key, jti) for the replay store: the caller
	// claims it once every other check has passed (RFC 9449 §11.1).
	ReplayKey string
}

// proofHeader holds the JOSE header members §4.2 requires, plus crit, which
// must be absent because we understand no extension (RFC 7515 §4.1.11).
type proofHeader struct {
	Typ  string          `json:"typ"`
	Alg  string          `json:"alg"`
	JWK  json.RawMessage `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
}

type proofClaims struct {
	JTI   *string  `json:"jti"`
	HTM   *string  `json:"htm"`
	HTU   *string  `json:"htu"`
	IAT   *float64 `json:"iat"`
	ATH   *string  `json:"ath"`
	Nonce *string  `json:"nonce"`
}

// proofInput is everything a proof is checked against.
type proofInput struct {
	headers []string // every DPoP header value of the request
	method  string
	htu     string // the request's URI, normalised (NormalizeHTU)
	// noToken: the proof comes without an access token (to a token
	// endpoint, RFC 9449 §5): no ath, nothing to bind to.
	noToken bool
	ath     [32]byte // SHA-256 of the access token
	jkt     string   // the token's cnf.jkt
	now     time.Time
}

// parsedProof is a proof after §4.3 items 1 and 2, before any check of its
// contents.
type parsedProof struct {
	jws    compactJWS
	header proofHeader
	claims proofClaims
}

// checkProof runs the checks of RFC 9449 §4.3, in the RFC's order, each in
// its own function. The replay check (§4.3 item 11's second half, §11.1) is
// the caller's: it needs a store, and it must come last.
func (v *Verifier) checkProof(in proofInput) (Proof, error) {
	raw, err := checkSingleHeader(in.headers)
	if err != nil {
		return Proof{}, err
	}
	p, err := parseProof(raw)
	if err != nil {
		return Proof{}, err
	}
	if err := checkRequiredClaims(&p, !in.noToken); err != nil {
		return Proof{}, err
	}
	if err := checkTyp(p.header.Typ); err != nil {
		return Proof{}, err
	}
	alg, err := v.checkProofAlg(p.header.Alg)
	if err != nil {
		return Proof{}, err
	}
	key, err := v.checkSignature(&p, alg)
	if err != nil {
		return Proof{}, err
	}
	if err := checkPublicOnly(key); err != nil {
		return Proof{}, err
	}
	if err := checkHTM(*p.claims.HTM, in.method); err != nil {
		return Proof{}, err
	}
	if err := checkHTU(*p.claims.HTU, in.htu); err != nil {
		return Proof{}, err
	}
	if err := v.checkNonce(p.claims.Nonce, in.now); err != nil {
		// A nonce challenge is no failed authentication to the caller
		// (it draws on no budget), so it goes to the holder of the
		// token's key only: a proof for another token, or by another
		// key (a stolen token), is refused as that.
		if !in.noToken {
			if _, err := checkBinding(&p, key, in); err != nil {
				return Proof{}, err
			}
		}
		return Proof{}, err
	}
	iat, err := v.checkIAT(*p.claims.IAT, in.now)
	if err != nil {
		return Proof{}, err
	}
	jti := *p.claims.JTI
	if in.noToken {
		return Proof{JKT: key.jkt, JTI: jti, IssuedAt: iat, ReplayKey: replayKey(key.jkt, jti)}, nil
	}
	jkt, err := checkBinding(&p, key, in)
	if err != nil {
		return Proof{}, err
	}
	return Proof{JKT: jkt, JTI: jti, IssuedAt: iat, ReplayKey: replayKey(jkt, jti)}, nil
}

// checkSingleHeader: "There is not more than one DPoP HTTP request header
// field" (§4.3 item 1), and there is one (§7.1: a DPoP-bound token comes
// with a proof).
func checkSingleHeader(headers []string) (string, error) {
	switch len(headers) {
	case 0:
		return "", proofError(ReasonMissingProof, "no DPoP header")
	case 1:
		return headers[0], nil
	default:
		return "", proofError(ReasonMultipleProofs, "%d DPoP headers", len(headers))
	}
}

// parseProof: "The DPoP HTTP request header field value is a single and
// well-formed JWT" (§4.3 item 2): compact JWS, JSON objects in header and
// payload, no critical extensions. The objects are read by jsonv2 (the
// coming encoding/json/v2): member names match exactly, as JSON's are
// case-sensitive (encoding/json would take "HTM" for htm), and a member
// given twice is refused (RFC 7515 §5.2 allows it), so that no other
// reader of the same proof can see another htm, htu or ath.
func parseProof(raw string) (parsedProof, error) {
	var p parsedProof
	var err error
	if p.jws, err = splitCompact(raw); err != nil {
		return p, proofError(ReasonMalformedProof, "%v", err)
	}
	if err := jsonv2.Unmarshal(p.jws.header, &p.header); err != nil {
		return p, proofError(ReasonMalformedProof, "header is not a JSON object of the expected members")
	}
	if p.header.Crit != nil {
		return p, proofError(ReasonMalformedProof, "header has crit, and we understand no extension")
	}
	if err := jsonv2.Unmarshal(p.jws.payload, &p.claims); err != nil {
		return p, proofError(ReasonMalformedProof, "payload is not a JSON object of the expected claims")
	}
	return p, nil
}

// checkRequiredClaims: "All required claims per Section 4.2 are contained in
// the JWT" (§4.3 item 3): typ, alg and jwk in the header; jti, htm, htu and
// iat in the payload; ath when the proof comes with an access token, as it
// always does at a resource server. The jti is bounded so the replay store
// is.
func checkRequiredClaims(p *parsedProof, withToken bool) error {
	h, c := &p.header, &p.claims
	var missing []string
	for _, m := range []struct {
		name    string
		present bool
	}{
		{"typ", h.Typ != ""}, {"alg", h.Alg != ""}, {"jwk", len(h.JWK) > 0 && string(h.JWK) != "null"},
		{"jti", c.JTI != nil && *c.JTI != ""}, {"htm", c.HTM != nil}, {"htu", c.HTU != nil},
		{"iat", c.IAT != nil}, {"ath", c.ATH != nil || !withToken},
	} {
		if !m.present {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return proofError(ReasonMissingClaim, "missing %s", strings.Join(missing, ", "))
	}
	if len(*c.JTI) > maxJTILen {
		return proofError(ReasonJTITooLong, "jti is %d bytes, more than %d", len(*c.JTI), maxJTILen)
	}
	return nil
}

// checkTyp: "The typ JOSE Header Parameter has the value dpop+jwt" (§4.3
// item 4). Media types compare case-insensitively (RFC 7515 §4.1.9), and the
// "application/" prefix may be present.
func checkTyp(typ string) error {
	if strings.EqualFold(typ, "dpop+jwt") || strings.EqualFold(typ, "application/dpop+jwt") {
		return nil
	}
	return proofError(ReasonProofTyp, "typ %q is not dpop+jwt", truncate(typ))
}

// checkProofAlg: "The alg JOSE Header Parameter indicates a registered
// asymmetric digital signature algorithm, is not none, is supported by the
// application, and is acceptable per local policy" (§4.3 item 5).
func (v *Verifier) checkProofAlg(name string) (*algorithm, error) {
	a, ok := v.proofAlgs[name]
	if !ok {
		return nil, proofError(ReasonProofAlg, "alg %q is not accepted", truncate(name))
	}
	return a, nil
}

// checkSignature: "The JWT signature verifies with the public key contained
// in the jwk JOSE Header Parameter" (§4.3 item 6). The key is parsed by jwx
// (once per distinct key, see jwkCache) and must be of the type alg needs.
func (v *Verifier) checkSignature(p *parsedProof, alg *algorithm) (*proofJWK, error) {
	key := v.jwks.parse(p.header.JWK)
	if key == nil {
		return nil, proofError(ReasonProofJWK, "jwk is not a valid asymmetric key")
	}
	if !alg.keyOK(key.raw) {
		return nil, proofError(ReasonProofJWK, "jwk does not suit %s", alg.name)
	}
	if err := alg.verify(p.jws.signingInput, p.jws.signature, key.raw); err != nil {
		return nil, proofError(ReasonProofSignature, "signature does not verify")
	}
	return key, nil
}

// checkPublicOnly: "The jwk JOSE Header Parameter does not contain a private
// key" (§4.3 item 7).
func checkPublicOnly(key *proofJWK) error {
	if key.private {
		return proofError(ReasonPrivateJWK, "jwk holds private key members")
	}
	return nil
}

// checkHTM: "The htm claim matches the HTTP method of the current request"
// (§4.3 item 8). Methods are case-sensitive (RFC 9110 §9.1).
func checkHTM(htm, method string) error {
	if htm != method {
		return proofError(ReasonHTMMismatch, "htm %q, request method %q", truncate(htm), method)
	}
	return nil
}

// checkHTU: "The htu claim matches the HTTP URI value for the HTTP request in
// which the JWT was received, ignoring any query and fragment parts" (§4.3
// item 9), both sides normalised per RFC 3986 §6.2.2 and §6.2.3.
func checkHTU(htu, requestURI string) error {
	got, err := NormalizeHTU(htu)
	if err != nil {
		return proofError(ReasonHTUMismatch, "htu is not an absolute http(s) URI")
	}
	if got != requestURI {
		return proofError(ReasonHTUMismatch, "htu %q, request %q", truncate(got), requestURI)
	}
	return nil
}

// checkNonce: "If the server provided a nonce value to the client, the nonce
// claim matches the server-provided nonce value" (§4.3 item 10). Nonces are
// stateless (see NonceSource), so "provided" means "one we minted, not yet
// stale"; a missing or stale one is answered with use_dpop_nonce (§9).
func (v *Verifier) checkNonce(nonce *string, now time.Time) error {
	if v.nonces == nil {
		return nil
	}
	if nonce == nil || *nonce == "" {
		return &Error{Code: UseDPoPNonce, Reason: ReasonMissingNonce, Scheme: "DPoP"}
	}
	if !v.nonces.Valid(*nonce, now) {
		return &Error{Code: UseDPoPNonce, Reason: ReasonStaleNonce, Scheme: "DPoP"}
	}
	return nil
}

// checkIAT: "The creation time of the JWT ... is within an acceptable
// window" (§4.3 item 11): not older than max_age plus skew, and not in the
// future by more than skew.
func (v *Verifier) checkIAT(iat float64, now time.Time) (time.Time, error) {
	t, ok := numericDate(iat)
	if !ok {
		return time.Time{}, proofError(ReasonMalformedProof, "iat is not a usable NumericDate")
	}
	switch {
	case t.Before(now.Add(-v.maxAge - v.skew)):
		return t, proofError(ReasonIATTooOld, "iat is %s old, more than %s", now.Sub(t).Truncate(time.Second), v.maxAge)
	case t.After(now.Add(v.skew)):
		return t, proofError(ReasonIATInFuture, "iat is %s in the future", t.Sub(now).Truncate(time.Second))
	}
	return t, nil
}

// checkATH: "ensure that the value of the ath claim equals the hash of that
// access token" (§4.3 item 12): base64url(SHA-256(token)), compared in
// constant time.
func checkATH(ath string, tokenHash [32]byte) error {
	var got [32]byte
	n, err := base64.RawURLEncoding.Strict().Decode(got[:], []byte(ath))
	if len(ath) != 43 || err != nil || n != 32 || subtle.ConstantTimeCompare(got[:], tokenHash[:]) != 1 {
		return proofError(ReasonATHMismatch, "ath is not the hash of the access token")
	}
	return nil
}

// checkBinding ties the proof to the access token: its ath (§4.3 item 11)
// and its key (item 12). It returns the proof key's thumbprint.
func checkBinding(p *parsedProof, key *proofJWK, in proofInput) (string, error) {
	if err := checkATH(*p.claims.ATH, in.ath); err != nil {
		return "", err
	}
	return checkJKT(key, in.jkt)
}

// checkJKT: "confirm that the public key to which the access token is bound
// matches the public key from the DPoP proof" (§4.3 item 12), by the RFC 7638
// SHA-256 thumbprint (§6.1), computed by jwx.
func checkJKT(key *proofJWK, boundJKT string) (string, error) {
	if subtle.ConstantTimeCompare([]byte(key.jkt), []byte(boundJKT)) != 1 {
		return key.jkt, proofError(ReasonJKTMismatch, "proof key is not the key the token is bound to")
	}
	return key.jkt, nil
}

// replayKey names (key, jti) in the replay store: 128 bits of SHA-256 over
// both, so a jti reused under another key is a different proof, and the
// store holds fixed-size keys whatever the client sends.
func replayKey(jkt, jti string) string {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var sum [32]byte
	return base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:16])
}

// truncate bounds a client-supplied value quoted in an error cause.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
