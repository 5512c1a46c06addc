package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// wellKnownPRM is the RFC 9728 §3 well-known path.
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// metadataPath is where a route's own protected-resource metadata lives:
// the well-known path with the route's prefix appended (RFC 9728 §3.1), so
// an MCP server mounted at /mcp is described at
// /.well-known/oauth-protected-resource/mcp.
func metadataPath(rt *route) string {
	return wellKnownPRM + strings.TrimSuffix(rt.prefix, "/")
}

// resourceMetadata is the RFC 9728 §2 document.
type resourceMetadata struct {
	Resource                      string   `json:"resource"`
	AuthorizationServers          []string `json:"authorization_servers,omitempty"`
	ScopesSupported               []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported        []string `json:"bearer_methods_supported"`
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported"`
	DPoPBoundAccessTokensRequired bool     `json:"dpop_bound_access_tokens_required"`
	ResourceName                  string   `json:"resource_name,omitempty"`
}

// serveMetadata answers GET /.well-known/oauth-protected-resource (the
// whole gateway) and /.well-known/oauth-protected-resource/<prefix> (one
// route), and reports whether r was such a request.
func (s *snapshot) serveMetadata(w http.ResponseWriter, r *http.Request, peerTrusted bool) bool {
	p := r.URL.Path
	if p != wellKnownPRM && !strings.HasPrefix(p, wellKnownPRM+"/") {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, newAnswer(codeNotFound, "no_route", errNoRoute), challengeParams{})
		return true
	}
	t := s.targetOf(r, peerTrusted)
	var md *resourceMetadata
	if p == wellKnownPRM {
		md = s.rootMetadata(t.origin)
	} else {
		for _, rt := range s.routes {
			if rt.auth != authNone && metadataPath(rt) == strings.TrimSuffix(p, "/") && (rt.host == "" || hostMatches(rt.host, t.host)) {
				md = s.routeMetadata(rt, t.origin)
				break
			}
		}
	}
	if md == nil {
		writeError(w, newAnswer(codeNotFound, "no_route", errNoRoute), challengeParams{})
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	json.NewEncoder(w).Encode(md)
	return true
}

// rootMetadata describes the gateway as one resource: every issuer, every
// scope a route needs; DPoP-bound tokens are required when every route that
// takes tokens refuses Bearer.
func (s *snapshot) rootMetadata(origin string) *resourceMetadata {
	md := s.newMetadata(origin)
	md.AuthorizationServers = s.issuers
	md.DPoPBoundAccessTokensRequired = true
	scopes := map[string]bool{}
	for _, rt := range s.routes {
		if rt.auth == authNone {
			continue
		}
		for _, sc := range rt.scopes {
			scopes[sc] = true
		}
		if !rt.requireDPoP {
			md.DPoPBoundAccessTokensRequired = false
		}
	}
	md.ScopesSupported = sortedKeys(scopes)
	return md
}

// routeMetadata describes one route as its own resource (RFC 9728 §3.1).
func (s *snapshot) routeMetadata(rt *route, origin string) *resourceMetadata {
	md := s.newMetadata(origin + strings.TrimSuffix(rt.prefix, "/"))
	if rt.resource != "" {
		md.Resource = rt.resource
	}
	md.AuthorizationServers = s.issuers
	if rt.issuers != nil {
		md.AuthorizationServers = slices.DeleteFunc(slices.Clone(s.issuers), func(iss string) bool { return !rt.issuers[iss] })
	}
	md.ScopesSupported = rt.scopes
	md.DPoPBoundAccessTokensRequired = rt.requireDPoP
	md.ResourceName = rt.name
	return md
}

func (s *snapshot) newMetadata(resource string) *resourceMetadata {
	return &resourceMetadata{
		Resource:                      resource,
		BearerMethodsSupported:        []string{"header"},
		DPoPSigningAlgValuesSupported: s.verifier.ProofAlgorithms(),
	}
}
