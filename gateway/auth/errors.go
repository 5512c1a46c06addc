package auth

import (
	"errors"
	"fmt"
)

// Code is the OAuth error code a failed check answers with (RFC 6750 §3.1,
// RFC 9449 §7.1 and §8, RFC 6749 §5.2). The gateway maps each code to an HTTP
// status and a challenge; the auth package only says which code applies.
type Code string

// The codes a verification can end with.
const (
	InvalidRequest         Code = "invalid_request"
	InvalidToken           Code = "invalid_token"
	InvalidDPoPProof       Code = "invalid_dpop_proof"
	UseDPoPNonce           Code = "use_dpop_nonce"
	InsufficientScope      Code = "insufficient_scope"
	TemporarilyUnavailable Code = "temporarily_unavailable"
)

// Reason names the one check that failed. Reasons are fixed strings, safe to
// use as metric label values and in logs; they never carry client input.
type Reason string

// Reasons for invalid_request.
const (
	ReasonMultipleAuthorization  Reason = "multiple_authorization"
	ReasonMalformedAuthorization Reason = "malformed_authorization"
	ReasonCredentialTooLarge     Reason = "credential_too_large"
)

// ReasonUnsupportedScheme: the Authorization header names another scheme
// (Basic, Negotiate...). It is an invalid_token answered as a missing
// token is: no error in the challenge (RFC 6750 §3.1).
const ReasonUnsupportedScheme Reason = "unsupported_scheme"

// Reasons for invalid_token (RFC 9068 §4, RFC 9449 §7).
const (
	ReasonMissingToken      Reason = "missing_token"
	ReasonMalformedToken    Reason = "malformed_token"
	ReasonUnknownIssuer     Reason = "unknown_issuer"
	ReasonTokenAlg          Reason = "bad_alg"
	ReasonTokenTyp          Reason = "bad_typ"
	ReasonUnknownKID        Reason = "unknown_kid"
	ReasonTokenSignature    Reason = "bad_signature"
	ReasonMissingExp        Reason = "missing_exp"
	ReasonExpired           Reason = "expired"
	ReasonNotYetValid       Reason = "not_yet_valid"
	ReasonIssuedInFuture    Reason = "iat_in_future"
	ReasonAudience          Reason = "bad_audience"
	ReasonNoClient          Reason = "no_client"
	ReasonUnsupportedCnf    Reason = "unsupported_cnf"
	ReasonBearerDowngrade   Reason = "bound_token_as_bearer"
	ReasonBearerRefused     Reason = "bearer_refused"
	ReasonUnboundDPoP       Reason = "unbound_token_as_dpop"
	ReasonInactive          Reason = "inactive"
	ReasonNotIntrospectable Reason = "not_introspectable"
)

// Reasons for invalid_dpop_proof and use_dpop_nonce, one per check of
// RFC 9449 §4.3, in the RFC's order.
const (
	ReasonMissingProof   Reason = "missing_proof"
	ReasonMultipleProofs Reason = "multiple_proofs"
	ReasonMalformedProof Reason = "malformed_proof"
	ReasonMissingClaim   Reason = "missing_claim"
	ReasonJTITooLong     Reason = "jti_too_long"
	ReasonProofTyp       Reason = "bad_typ"
	ReasonProofAlg       Reason = "bad_alg"
	ReasonProofJWK       Reason = "bad_jwk"
	ReasonProofSignature Reason = "bad_signature"
	ReasonPrivateJWK     Reason = "private_jwk"
	ReasonHTMMismatch    Reason = "htm_mismatch"
	ReasonHTUMismatch    Reason = "htu_mismatch"
	ReasonMissingNonce   Reason = "missing_nonce"
	ReasonStaleNonce     Reason = "stale_nonce"
	ReasonIATTooOld      Reason = "iat_too_old"
	ReasonIATInFuture    Reason = "iat_in_future"
	ReasonATHMismatch    Reason = "ath_mismatch"
	ReasonJKTMismatch    Reason = "jkt_mismatch"
	ReasonReplayed       Reason = "replayed"
)

// Reasons for temporarily_unavailable.
const (
	ReasonKeysUnavailable          Reason = "keys_unavailable"
	ReasonIntrospectionUnavailable Reason = "introspection_unavailable"
	ReasonReplayStoreUnavailable   Reason = "replay_store_unavailable"
)

// Error is a failed verification: the code the client sees, the reason for
// logs and metrics, and the cause (which may quote parsed values, never the
// token or proof itself).
type Error struct {
	Code   Code
	Reason Reason
	// Scheme is the Authorization scheme of the request ("DPoP" or "Bearer"),
	// empty when the request had none; the challenge is written in it.
	Scheme string
	// Scope lists the scopes a route needs, for insufficient_scope.
	Scope string
	Err   error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%s: %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("%s: %s: %v", e.Code, e.Reason, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

func proofError(r Reason, format string, args ...any) *Error {
	return &Error{Code: InvalidDPoPProof, Reason: r, Scheme: "DPoP", Err: fmt.Errorf(format, args...)}
}

func tokenError(r Reason, format string, args ...any) *Error {
	return &Error{Code: InvalidToken, Reason: r, Err: fmt.Errorf(format, args...)}
}
