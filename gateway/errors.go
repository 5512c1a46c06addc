package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dpopgate/dpopgate/gateway/auth"
)

// Error codes the gateway answers with besides those of package auth.
const (
	codeRateLimited    = "rate_limited"
	codeNotFound       = "not_found"
	codeBadGateway     = "bad_gateway"
	codeGatewayTimeout = "gateway_timeout"
)

// answer is the one shape of every error the gateway writes (spec §4): the
// code and status the client sees, a fixed description, the challenge, and
// the cause, which goes to the log only.
type answer struct {
	code       string
	status     int
	reason     string // fixed label for logs and metrics
	scheme     string // challenge scheme: "DPoP", "Bearer", or "" for none
	scope      string // for insufficient_scope
	retryAfter time.Duration
	cause      error
}

func (a *answer) Error() string {
	if a.cause == nil {
		return a.code + ": " + a.reason
	}
	return a.code + ": " + a.reason + ": " + a.cause.Error()
}

// statusOf maps each error code to its HTTP status (spec §4).
var statusOf = map[string]int{
	string(auth.InvalidRequest):         http.StatusBadRequest,
	string(auth.InvalidToken):           http.StatusUnauthorized,
	string(auth.InvalidDPoPProof):       http.StatusUnauthorized,
	string(auth.UseDPoPNonce):           http.StatusUnauthorized,
	string(auth.InsufficientScope):      http.StatusForbidden,
	string(auth.TemporarilyUnavailable): http.StatusServiceUnavailable,
	codeRateLimited:                     http.StatusTooManyRequests,
	codeNotFound:                        http.StatusNotFound,
	codeBadGateway:                      http.StatusBadGateway,
	codeGatewayTimeout:                  http.StatusGatewayTimeout,
}

// descriptions are the fixed texts a client sees, by reason, then by code.
// They never quote the request.
var descriptions = map[string]string{
	"missing_token":                     "An access token is required",
	"multiple_authorization":            "Send exactly one Authorization header",
	"malformed_authorization":           "The Authorization header is not a DPoP or Bearer token",
	"unsupported_scheme":                "Use the DPoP (or Bearer) authorization scheme",
	"credential_too_large":              "The credentials are too large",
	"headers_too_large":                 "The request headers are too large",
	"token_in_query":                    "Access tokens are accepted in the Authorization header only",
	"dot_segment":                       "The request path has dot segments",
	"empty_segment":                     "The request path has empty segments",
	"backslash":                         "The request path has a backslash",
	"matrix_parameter":                  "The request path has a ';' parameter",
	"request_body_timeout":              "The request body did not arrive in time",
	"request_body_incomplete":           "The request body ended before it was whole",
	"bound_token_as_bearer":             "A DPoP-bound token must be sent with the DPoP scheme",
	"bearer_refused":                    "This resource requires DPoP-bound access tokens",
	"unbound_token_as_dpop":             "The access token is not DPoP-bound",
	"issuer_not_allowed":                "The access token's issuer is not accepted for this resource",
	"missing_proof":                     "A DPoP proof is required",
	"multiple_proofs":                   "Send exactly one DPoP header",
	"htm_mismatch":                      "DPoP proof htm does not match the request method",
	"htu_mismatch":                      "DPoP proof htu does not match the request URI",
	"ath_mismatch":                      "DPoP proof ath does not match the access token",
	"jkt_mismatch":                      "DPoP proof key does not match the token binding",
	"iat_too_old":                       "DPoP proof is too old",
	"replayed":                          "DPoP proof has already been used",
	"missing_nonce":                     "Resource server requires nonce in DPoP proof",
	"stale_nonce":                       "Resource server requires a fresh nonce in DPoP proof",
	"expired":                           "The access token expired",
	string(auth.InvalidToken):           "The access token is not valid",
	string(auth.InvalidDPoPProof):       "The DPoP proof is not valid",
	string(auth.InsufficientScope):      "The access token lacks a required scope",
	string(auth.TemporarilyUnavailable): "The service is temporarily unavailable",
	string(auth.InvalidRequest):         "The request is malformed",
	codeRateLimited:                     "Rate limit exceeded",
	codeNotFound:                        "No route for this request",
	codeBadGateway:                      "The upstream could not be reached",
	codeGatewayTimeout:                  "The upstream did not answer in time",
}

func describe(a *answer) string {
	if d, ok := descriptions[a.reason]; ok && a.code != string(auth.TemporarilyUnavailable) {
		return d
	}
	return descriptions[a.code]
}

// fromAuth turns a verification failure into an answer.
func fromAuth(err error) *answer {
	e := auth.AsError(err)
	if e == nil {
		return &answer{code: string(auth.TemporarilyUnavailable), status: http.StatusServiceUnavailable, reason: "internal", cause: err}
	}
	return &answer{
		code:   string(e.Code),
		status: statusOf[string(e.Code)],
		reason: string(e.Reason),
		scheme: e.Scheme,
		scope:  e.Scope,
		cause:  e.Err,
	}
}

func newAnswer(code, reason string, cause error) *answer {
	return &answer{code: code, status: statusOf[code], reason: reason, cause: cause}
}

// challengeParams are what every challenge of a route carries.
type challengeParams struct {
	algs             string // DPoP algs, space-separated
	resourceMetadata string // RFC 9728 metadata URL
	bearerToo        bool   // the route takes Bearer tokens: offer both schemes
}

// writeError writes a (JSON body, Cache-Control: no-store and, for 401 and
// 403, WWW-Authenticate challenges as spec §4 lays out). It is the only
// place an error answer is written.
func writeError(w http.ResponseWriter, a *answer, cp challengeParams) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	desc := describe(a)
	switch a.status {
	case http.StatusUnauthorized, http.StatusForbidden:
		for _, c := range challenges(a, desc, cp) {
			h.Add("WWW-Authenticate", c)
		}
	case http.StatusTooManyRequests:
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(a.retryAfter), 10))
	}
	w.WriteHeader(a.status)
	body, _ := json.Marshal(struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}{a.code, desc})
	w.Write(append(body, '\n'))
}

// challenges builds the WWW-Authenticate values for a 401 or 403.
//
//   - No token on a route that needs one, or credentials of another
//     scheme: a DPoP challenge without error (RFC 6750 §3.1), with algs
//     and resource_metadata; when the route also
//     takes Bearer tokens a Bearer challenge comes first, since MCP SDK
//     clients read only the first challenge's parameters.
//   - Otherwise one challenge in the scheme of the request (DPoP when the
//     request had none or the route refuses Bearer), with the error.
func challenges(a *answer, desc string, cp challengeParams) []string {
	rm := ""
	if cp.resourceMetadata != "" {
		rm = fmt.Sprintf(`resource_metadata="%s"`, cp.resourceMetadata)
	}
	dpop := func(params ...string) string {
		return "DPoP " + joinParams(append(params, fmt.Sprintf(`algs="%s"`, cp.algs), rm)...)
	}
	if a.reason == "missing_token" || a.reason == string(auth.ReasonUnsupportedScheme) {
		out := []string{}
		if cp.bearerToo {
			out = append(out, "Bearer "+joinParams(rm))
		}
		return append(out, dpop())
	}
	params := []string{fmt.Sprintf(`error="%s"`, a.code), fmt.Sprintf(`error_description="%s"`, desc)}
	if a.scope != "" {
		params = append(params, fmt.Sprintf(`scope="%s"`, a.scope))
	}
	if a.scheme == "Bearer" {
		return []string{"Bearer " + joinParams(append(params, rm)...)}
	}
	return []string{dpop(params...)}
}

func joinParams(params ...string) string {
	out := params[:0:0]
	for _, p := range params {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

// ceilSeconds rounds d up to whole seconds, at least 1 when positive.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

var errNoRoute = errors.New("no route matches")
