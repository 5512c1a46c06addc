package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// Principal is who a verified access token speaks for. It is shared between
// requests (the token cache hands out the same value), so it is read-only.
type Principal struct {
	Issuer   string
	Subject  string
	ClientID string   // client_id, else azp, else sub (RFC 9068 §2.2)
	Scopes   []string // scope (space-separated) or scp (array)
	Tier     string   // the configured tier claim, "" when absent
	JKT      string   // cnf.jkt (RFC 9449 §6.1), "" for an unbound token
	Expiry   time.Time
	// Introspected: the principal comes from an introspection answer
	// (RFC 7662), not from a JWT's claims.
	Introspected bool
}

// Scope returns the scopes space-separated, as in a scope claim.
func (p *Principal) Scope() string { return strings.Join(p.Scopes, " ") }

// MissingScopes returns the scopes of want that p does not hold.
func (p *Principal) MissingScopes(want []string) []string {
	var missing []string
	for _, s := range want {
		found := false
		for _, h := range p.Scopes {
			if h == s {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, s)
		}
	}
	return missing
}

type tokenHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// tokenClaims are the claims of RFC 9068 §2.2 we read. Optional numbers are
// pointers so "absent" and "0" differ.
type tokenClaims struct {
	Iss      string          `json:"iss"`
	Sub      string          `json:"sub"`
	Aud      audience        `json:"aud"`
	Exp      *float64        `json:"exp"`
	Nbf      *float64        `json:"nbf"`
	Iat      *float64        `json:"iat"`
	ClientID string          `json:"client_id"`
	Azp      string          `json:"azp"`
	Scope    string          `json:"scope"`
	Scp      json.RawMessage `json:"scp"`
	Cnf      json.RawMessage `json:"cnf"`
}

// audience is aud, a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// verifyToken checks a JWT access token as RFC 9068 §4 asks, from the
// cheapest check to the signature and then the claims, and returns its
// principal. A verified token is cached (by SHA-256) until its exp. A
// token that is not a JWT is introspected at the allowed issuers (nil:
// all) that can.
func (v *Verifier) verifyToken(ctx context.Context, raw string, sum [32]byte, allowed []string, now time.Time) (*Principal, error) {
	if p, ok := v.tokens.get(sum, now); ok {
		return p, nil
	}
	jws, err := splitCompact(raw)
	// jsonv2, as for proofs (see parseProof): exact names, no duplicates.
	var h tokenHeader
	var c tokenClaims
	if err == nil {
		err = jsonv2.Unmarshal(jws.header, &h)
	}
	if err == nil {
		err = jsonv2.Unmarshal(jws.payload, &c)
	}
	if err != nil || h.Alg == "" {
		// Not a JWT: an opaque token, for the issuers that introspect.
		if len(v.introspecting) > 0 {
			return v.introspectOpaque(ctx, raw, sum, allowed, now)
		}
		return nil, tokenError(ReasonMalformedToken, "not a JWS compact serialisation with a JSON header and payload")
	}
	if h.Crit != nil {
		return nil, tokenError(ReasonMalformedToken, "header has crit, and we understand no extension")
	}
	// The issuer picks the key set; an issuer we do not know is refused
	// before anything is fetched.
	iss := v.issuers[c.Iss]
	if iss == nil {
		return nil, tokenError(ReasonUnknownIssuer, "iss %q is not a configured issuer", truncate(c.Iss))
	}
	alg, ok := iss.algs[h.Alg]
	if !ok {
		return nil, tokenError(ReasonTokenAlg, "alg %q is not accepted for %s", truncate(h.Alg), iss.name)
	}
	if iss.requireTyp && !strings.EqualFold(h.Typ, "at+jwt") && !strings.EqualFold(h.Typ, "application/at+jwt") {
		return nil, tokenError(ReasonTokenTyp, "typ %q is not at+jwt (RFC 9068 §4)", truncate(h.Typ))
	}
	keys, err := iss.keys.lookup(ctx, h.Kid, h.Alg, now)
	if err != nil {
		return nil, err
	}
	verified := false
	for _, k := range keys {
		if alg.verify(jws.signingInput, jws.signature, k.raw) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, tokenError(ReasonTokenSignature, "signature does not verify with the issuer's key")
	}
	p, err := v.principal(iss, &c, jws.payload, now, principalFromJWT, 0)
	if err != nil {
		return nil, err
	}
	v.tokens.put(sum, p, p.Expiry, now)
	return p, nil
}

// principalSource says where claims come from: a signed JWT (RFC 9068,
// where exp and aud are required) or an introspection answer (RFC 7662,
// where they are optional but checked when present).
type principalSource int

const (
	principalFromJWT principalSource = iota
	principalFromIntrospection
)

// principal validates the claims of a token whose signature verified, or
// of an active introspection answer. ttl is the expiry given to an
// introspected principal without exp.
func (v *Verifier) principal(iss *issuer, c *tokenClaims, payload []byte, now time.Time, src principalSource, ttl time.Duration) (*Principal, error) {
	// An answer without exp names no expiry: exp is then only how long the
	// answer may be cached, nothing to check the token against.
	exp := now.Add(ttl)
	switch {
	case c.Exp != nil:
		var ok bool
		if exp, ok = numericDate(*c.Exp); !ok {
			return nil, tokenError(ReasonMalformedToken, "exp is not a usable NumericDate")
		}
		if !now.Before(exp.Add(v.skew)) {
			return nil, tokenError(ReasonExpired, "expired %s ago", now.Sub(exp).Truncate(time.Second))
		}
	case src == principalFromJWT:
		return nil, tokenError(ReasonMissingExp, "no exp (RFC 9068 §2.2)")
	}
	if c.Nbf != nil {
		if nbf, ok := numericDate(*c.Nbf); !ok || nbf.After(now.Add(v.skew)) {
			return nil, tokenError(ReasonNotYetValid, "nbf is in the future")
		}
	}
	if c.Iat != nil {
		if iat, ok := numericDate(*c.Iat); !ok || iat.After(now.Add(v.skew)) {
			return nil, tokenError(ReasonIssuedInFuture, "iat is in the future")
		}
	}
	if !iss.audienceOK(c.Aud) && (src == principalFromJWT || len(c.Aud) > 0) {
		return nil, tokenError(ReasonAudience, "aud names none of the configured audiences")
	}
	p := &Principal{Issuer: iss.name, Subject: c.Sub, Expiry: exp}
	switch {
	case c.ClientID != "":
		p.ClientID = c.ClientID
	case c.Azp != "":
		p.ClientID = c.Azp
	default:
		p.ClientID = c.Sub
	}
	if p.ClientID == "" {
		return nil, tokenError(ReasonNoClient, "no client_id, azp or sub")
	}
	if !headerSafe(p.Subject) || !headerSafe(p.ClientID) {
		return nil, tokenError(ReasonMalformedToken, "sub or client_id holds a control character or surrounding space")
	}
	scopes, err := parseScopes(c.Scope, c.Scp)
	if err != nil {
		return nil, err
	}
	p.Scopes = scopes
	if p.JKT, err = parseCnf(c.Cnf); err != nil {
		return nil, err
	}
	if v.tierClaim != "" {
		p.Tier = stringClaim(payload, v.tierClaim)
	}
	return p, nil
}

// headerSafe reports whether s reaches the upstream unchanged as a header
// value (X-Auth-Subject, X-Auth-Client-Id): no control character, which
// no HTTP message can carry, and no leading or trailing space or tab,
// which the upstream's parser would drop, reading " admin" as "admin".
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return s == "" || s[0] != ' ' && s[len(s)-1] != ' '
}

// parseScopes reads scope (space-separated string, RFC 8693 §4.2) or scp
// (an array of strings, or a string, as some servers send).
func parseScopes(scope string, scp json.RawMessage) ([]string, error) {
	if scope != "" {
		return splitScope(scope), nil
	}
	if len(scp) == 0 || string(scp) == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(scp, &list); err == nil {
		return slices.DeleteFunc(list, func(s string) bool { return !isScopeToken(s) }), nil
	}
	var s string
	if err := json.Unmarshal(scp, &s); err == nil {
		return splitScope(s), nil
	}
	return nil, tokenError(ReasonMalformedToken, "scp is neither a string nor an array of strings")
}

// splitScope splits a scope string at SP, the one delimiter of RFC 6749
// §3.3 (not at tabs or Unicode spaces, which strings.Fields would take),
// and drops what is not a scope-token: a malformed value grants nothing,
// and never reaches the upstream (X-Auth-Scope) to be split there.
func splitScope(s string) []string {
	var out []string
	for _, v := range strings.Split(s, " ") {
		if isScopeToken(v) {
			out = append(out, v)
		}
	}
	return out
}

// isScopeToken: 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// parseCnf reads the confirmation claim (RFC 7800). Only jkt (RFC 9449
// §6.1) is understood; a token bound by another method (x5t#S256, mTLS) is
// refused, since we could not check its binding.
func parseCnf(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var cnf map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cnf); err != nil {
		return "", tokenError(ReasonMalformedToken, "cnf is not a JSON object")
	}
	jktRaw, ok := cnf["jkt"]
	if !ok || len(cnf) != 1 {
		// RFC 7800 §3.1: cnf represents a single proof-of-possession
		// key. A member besides jkt (x5t#S256, kid, jwk) binds the token
		// to a key we do not check possession of.
		return "", tokenError(ReasonUnsupportedCnf, "cnf binds the token by a method other than jkt")
	}
	var jkt string
	if err := json.Unmarshal(jktRaw, &jkt); err != nil || len(jkt) != 43 {
		return "", tokenError(ReasonMalformedToken, "cnf.jkt is not a base64url SHA-256 thumbprint")
	}
	return jkt, nil
}

// stringClaim returns the named claim of a JSON object when it is a string.
func stringClaim(payload []byte, name string) string {
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return ""
	}
	raw := bytes.TrimSpace(claims[name])
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// numericDate converts a JSON NumericDate (RFC 7519 §2), refusing values no
// clock will ever show.
func numericDate(f float64) (time.Time, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
