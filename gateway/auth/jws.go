package auth

import (
	"encoding/base64"
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
