package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

var (
	errNotCompact = errors.New("not a compact JWS (three base64url parts)")
	errBase64     = errors.New("a JWS part is not base64url without padding")
)

// compactJWS is a JWS in compact serialisation (RFC 7515 §7.1), split but
// not yet trusted: header and payload are decoded bytes, signingInput is the
// ASCII "header.payload" the signature covers.
type compactJWS struct {
	header       []byte
	payload      []byte
	signature    []byte
	signingInput string
}

// splitCompact splits s into its three parts and base64url-decodes them. It
// refuses anything else: JSON serialisation, padding, a fourth part, empty
// parts, or characters outside the base64url alphabet. Bounded by len(s).
func splitCompact(s string) (compactJWS, error) {
	h, rest, ok := strings.Cut(s, ".")
	if !ok {
		return compactJWS{}, errNotCompact
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || h == "" || p == "" || sig == "" || strings.IndexByte(sig, '.') >= 0 {
		return compactJWS{}, errNotCompact
	}
	// One buffer for the three decoded parts keeps this to one allocation.
	enc := base64.RawURLEncoding
	buf := make([]byte, enc.DecodedLen(len(h))+enc.DecodedLen(len(p))+enc.DecodedLen(len(sig)))
	var j compactJWS
	var err error
	if j.header, buf, err = decodePart(buf, h); err != nil {
		return compactJWS{}, err
	}
	if j.payload, buf, err = decodePart(buf, p); err != nil {
		return compactJWS{}, err
	}
	if j.signature, _, err = decodePart(buf, sig); err != nil {
		return compactJWS{}, err
	}
	j.signingInput = s[:len(h)+1+len(p)]
	return j, nil
}

func decodePart(buf []byte, s string) (part, rest []byte, err error) {
	n, err := base64.RawURLEncoding.Strict().Decode(buf, []byte(s))
	if err != nil {
		return nil, nil, errBase64
	}
	return buf[:n:n], buf[n:], nil
}

// decodeObject decodes the JSON object data member by member: member says
// where the member of that exact name goes, or nil to ignore it. Member
// names are case-sensitive (RFC 8259 §4, RFC 7515 §4, RFC 7519 §4), but
// encoding/json matches struct fields in any case, so that a proof with
// "htm":"GET" and "HTM":"POST" would be read as a POST, and a token with a
// "CNF":null after its cnf as unbound: a claim its signer never made. An
// exact duplicate resolves to the last one, as encoding/json does.
func decodeObject(data []byte, member func(name string) any) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return err
	}
	for name, raw := range members {
		if dst := member(name); dst != nil {
			if err := json.Unmarshal(raw, dst); err != nil {
				return err
			}
		}
	}
	return nil
}
