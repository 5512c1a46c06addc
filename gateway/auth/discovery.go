package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxMetadataBytes bounds what we read from an issuer's metadata or JWKS
// document; real ones are a few kilobytes.
const maxMetadataBytes = 1 << 20

// Metadata is the part of an authorization server's metadata (RFC 8414 §2,
// OpenID Connect Discovery 1.0 §3) that a resource server uses.
type Metadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	RegistrationEndpoint  string `json:"registration_endpoint"` // RFC 7591
}

// MetadataURLs returns where an issuer publishes its metadata, in the order
// to try: RFC 8414 §3.1 (the well-known segment inserted between host and
// path), then OpenID Connect Discovery §4 (appended to the issuer).
func MetadataURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("issuer %q is not an absolute http(s) URL", issuer)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	origin := u.Scheme + "://" + u.Host
	return []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + path + "/.well-known/openid-configuration",
	}, nil
}

// Discover fetches an issuer's metadata from the first well-known URL that
// answers, and checks that it names the same issuer (RFC 8414 §3.3).
func Discover(ctx context.Context, client *http.Client, issuer string) (Metadata, error) {
	urls, err := MetadataURLs(issuer)
	if err != nil {
		return Metadata{}, err
	}
	var errs []error
	for _, u := range urls {
		var md Metadata
		if err := getJSON(ctx, client, u, &md); err != nil {
			errs = append(errs, err)
			continue
		}
		if md.Issuer != issuer {
			errs = append(errs, fmt.Errorf("%s names issuer %q, not %q", u, md.Issuer, issuer))
			continue
		}
		return md, nil
	}
	return Metadata{}, fmt.Errorf("discovering %s: %w", issuer, errors.Join(errs...))
}

// getJSON GETs u, insisting on a JSON media type (RFC 8414 §3.2), and
// decodes a body of at most maxMetadataBytes into v.
func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	body, hdr, err := get(ctx, client, u)
	if err != nil {
		return err
	}
	if mt, ok := jsonMediaType(hdr); !ok {
		return fmt.Errorf("GET %s: content type %q is not JSON", shown(u), mt)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: body is not the expected JSON: %w", shown(u), err)
	}
	return nil
}

// shown is u as errors, and so the log, name it: without its query and
// fragment, which may carry a key (a hosted function's ?code=...), and
// with any password masked.
func shown(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "the configured URL"
	}
	if p.RawQuery != "" || p.ForceQuery {
		p.RawQuery = "xxxxx"
	}
	p.Fragment, p.RawFragment = "", ""
	return p.Redacted()
}

// hideURL makes the URL a *url.Error quotes (client.Do's errors do) the
// shown one.
func hideURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = shown(ue.URL)
	}
	return err
}

// jsonMediaType returns the media type of a response and whether it is
// JSON (application/json or +json); an absent Content-Type passes.
func jsonMediaType(hdr http.Header) (string, bool) {
	ct := hdr.Get("Content-Type")
	if ct == "" {
		return "", true
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt, mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// get fetches u, insisting on 200, and returns the body (bounded) and the
// response headers. It does not look at the media type: a JWK Set kept as
// a static file often goes out as text/plain or binary/octet-stream, and
// has to parse as one anyway.
func get(ctx context.Context, client *http.Client, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, hideURL(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", shown(u), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: status %d", shown(u), resp.StatusCode)
	}
	if len(body) > maxMetadataBytes {
		return nil, nil, fmt.Errorf("GET %s: body larger than %d bytes", shown(u), maxMetadataBytes)
	}
	return body, resp.Header, nil
}
