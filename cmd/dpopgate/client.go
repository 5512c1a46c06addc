package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/gateway/dpopclient"
)

// The client-side commands: keygen, proof, token, register. Each prints
// its result on stdout and fails with one line naming what went wrong.

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", stderr)
	alg := fs.String("alg", "ES256", "algorithm: "+strings.Join(dpopclient.Algorithms, ", "))
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := dpopclient.GenerateKey(*alg)
	if err != nil {
		return err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	fmt.Fprintf(stderr, "jkt %s\n", k.Thumbprint())
	return nil
}

// loadKey reads a private JWK file as keygen writes it.
func loadKey(path string) (*dpopclient.Key, error) {
	if path == "" {
		return nil, errors.New("--key FILE is required (make one with: dpopgate keygen > key.jwk)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	k, err := dpopclient.ParseKey(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %v", path, err)
	}
	return k, nil
}

func proof(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("proof", stderr)
	keyFile := fs.String("key", "", "private JWK `file`")
	method := fs.String("method", "GET", "HTTP method of the request")
	u := fs.String("url", "", "URL of the request")
	token := fs.String("token", "", "access token the proof goes with (sets ath)")
	nonce := fs.String("nonce", "", "server nonce (from a DPoP-Nonce header)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	if _, err := auth.NormalizeHTU(*u); err != nil {
		return fmt.Errorf("--url %q is not an absolute http(s) URL", *u)
	}
	p, err := k.Proof(strings.ToUpper(*method), *u, *token, *nonce, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, p)
	return nil
}

// token gets a DPoP-bound access token with the client_credentials grant
// from any RFC 8414 authorization server, retrying once on use_dpop_nonce.
func token(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stderr)
	issuer := fs.String("issuer", "", "authorization server `URL` (its issuer)")
	clientID := fs.String("client-id", "", "client id")
	secret := fs.String("client-secret", "", "client secret (none for a public client)")
	keyFile := fs.String("key", "", "private JWK `file` the token is bound to")
	scope := fs.String("scope", "", "scopes to ask for, space-separated")
	resource := fs.String("resource", "", "resource indicator (RFC 8707)")
	raw := fs.Bool("raw", false, "print only the access token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *issuer == "" || *clientID == "" {
		return errors.New("--issuer URL and --client-id ID are required")
	}
	k, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 15 * time.Second}
	md, err := auth.Discover(ctx, client, *issuer)
	if err != nil {
		return fmt.Errorf("issuer %s: no RFC 8414 metadata: %v", *issuer, oneLine(err))
	}
	if md.TokenEndpoint == "" {
		return fmt.Errorf("issuer %s: its metadata names no token_endpoint", *issuer)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if *scope != "" {
		form.Set("scope", *scope)
	}
	if *resource != "" {
		form.Set("resource", *resource)
	}
	if *secret == "" {
		form.Set("client_id", *clientID)
	}
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.TokenEndpoint, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if *secret != "" {
		req.SetBasicAuth(url.QueryEscape(*clientID), url.QueryEscape(*secret))
	}
	client.Transport = &dpopclient.Transport{Key: k}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("token endpoint %s: %v", md.TokenEndpoint, oneLine(err))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	json.Unmarshal(out, &tr)
	if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		if tr.Error != "" {
			return fmt.Errorf("token endpoint answered %d %s: %s", resp.StatusCode, tr.Error, tr.Description)
		}
		return fmt.Errorf("token endpoint answered %d without a token", resp.StatusCode)
	}
	if !strings.EqualFold(tr.TokenType, "DPoP") {
		fmt.Fprintf(stderr, "warning: token_type is %q, not DPoP: the server did not bind the token\n", tr.TokenType)
	}
	if *raw {
		fmt.Fprintln(stdout, tr.AccessToken)
		return nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(out))
	return nil
}

// register creates a client by RFC 7591 dynamic registration.
func register(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("register", stderr)
	issuer := fs.String("issuer", "", "authorization server `URL` (its issuer)")
	name := fs.String("name", "dpopgate-cli", "client name")
	scope := fs.String("scope", "", "scopes to ask for, space-separated")
	method := fs.String("auth-method", "none", "token_endpoint_auth_method: none (public client) or client_secret_basic")
	raw := fs.Bool("raw", false, "print only the client_id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *issuer == "" {
		return errors.New("--issuer URL is required")
	}
	client := &http.Client{Timeout: 15 * time.Second}
	md, err := auth.Discover(ctx, client, *issuer)
	if err != nil {
		return fmt.Errorf("issuer %s: no RFC 8414 metadata: %v", *issuer, oneLine(err))
	}
	if md.RegistrationEndpoint == "" {
		return fmt.Errorf("issuer %s: its metadata names no registration_endpoint", *issuer)
	}
	reqBody, _ := json.Marshal(map[string]any{
		"client_name": *name, "token_endpoint_auth_method": *method,
		"grant_types": []string{"client_credentials"}, "scope": *scope,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.RegistrationEndpoint, bytes.NewReader(reqBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("registration endpoint: %v", oneLine(err))
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var rr struct {
		ClientID    string `json:"client_id"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	json.Unmarshal(out, &rr)
	if resp.StatusCode/100 != 2 || rr.ClientID == "" {
		return fmt.Errorf("registration answered %d %s: %s", resp.StatusCode, rr.Error, rr.Description)
	}
	if *raw {
		fmt.Fprintln(stdout, rr.ClientID)
		return nil
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(out))
	return nil
}

// oneLine keeps the first line of an error, for one-line CLI messages.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
