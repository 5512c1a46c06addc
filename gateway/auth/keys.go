package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

const (
	// fetchTimeout bounds one discovery or JWKS fetch, whoever waits on it.
	fetchTimeout = 10 * time.Second
	// maxMissingKIDs bounds the memory of kids known not to exist.
	maxMissingKIDs = 1024
	// maxKeysTried bounds the keys tried for a token without kid.
	maxKeysTried = 8
)

var errNoUsableKeys = errors.New("JWKS holds no usable signing key")

// verifyKey is one public key from an issuer's JWKS, ready to verify with.
type verifyKey struct {
	kid string
	alg string // the JWK's "alg", or "" when it names none
	raw any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySnapshot is an immutable view of a JWKS, swapped in whole on refresh.
type keySnapshot struct {
	byKID     map[string][]*verifyKey // several keys may share a kid (RFC 7517 §4.5)
	all       []*verifyKey
	fetchedAt time.Time
}

// keySet caches one issuer's signing keys (RFC 7517 JWKS, parsed by jwx).
//
// Reads are lock-free. A refresh happens on schedule (refreshIfDue, driven
// by Verifier.Run) and when a token names an unknown kid, single-flight and
// at most once per minInterval; a kid still unknown after a refresh is
// remembered for minInterval so a flood of random kids is answered from
// memory. A failed refresh keeps the keys we have (served stale) and backs
// off exponentially up to the refresh interval.
type keySet struct {
	issuer      string
	configured  string // jwks_uri from config; "" means discover it
	client      *http.Client
	every       time.Duration
	minInterval time.Duration
	observe     func(issuer string, err error)

	snap atomic.Pointer[keySnapshot]

	mu       sync.Mutex
	md       Metadata // discovered metadata, when discovery ran
	jwksURI  string
	lastTry  time.Time
	next     time.Time
	failures int
	inflight chan struct{} // non-nil while a fetch runs; closed when done
	lastErr  error
	missing  map[string]time.Time // kid -> remembered as unknown until
}

// lookup returns the keys that may verify a token with this kid and alg,
// refreshing the set when the kid is unknown and a refresh is allowed.
func (ks *keySet) lookup(ctx context.Context, kid, alg string, now time.Time) ([]*verifyKey, error) {
	if keys := ks.snap.Load().find(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	ks.mu.Lock()
	if until, ok := ks.missing[kid]; ok && now.Before(until) {
		ks.mu.Unlock()
		return nil, tokenError(ReasonUnknownKID, "kid not in the issuer's JWKS")
	}
	var err error
	switch {
	case ks.inflight != nil:
		ch := ks.inflight
		ks.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, &Error{Code: TemporarilyUnavailable, Reason: ReasonKeysUnavailable, Err: ctx.Err()}
		}
		ks.mu.Lock()
		err = ks.lastErr
		ks.mu.Unlock()
	case ks.lastTry.IsZero() || now.Sub(ks.lastTry) >= ks.minInterval:
		ks.mu.Unlock()
		err = ks.refresh(ctx, now)
	default:
		ks.mu.Unlock()
		err = nil // not allowed to fetch again yet: answer from what we have
	}
	snap := ks.snap.Load()
	if keys := snap.find(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	if snap == nil || err != nil {
		return nil, &Error{Code: TemporarilyUnavailable, Reason: ReasonKeysUnavailable, Err: fmt.Errorf("keys of %s unavailable: %v", ks.issuer, err)}
	}
	ks.rememberMissing(kid, now)
	return nil, tokenError(ReasonUnknownKID, "kid not in the issuer's JWKS")
}

func (ks *keySet) rememberMissing(kid string, now time.Time) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(ks.missing) >= maxMissingKIDs {
		for k, until := range ks.missing {
			if !now.Before(until) {
				delete(ks.missing, k)
			}
		}
		if len(ks.missing) >= maxMissingKIDs {
			clear(ks.missing)
		}
	}
	if ks.missing == nil {
		ks.missing = make(map[string]time.Time)
	}
	ks.missing[kid] = now.Add(ks.minInterval)
}

// find returns up to maxKeysTried keys of s usable for alg: those with that
// kid, or, for a token without kid, any.
func (s *keySnapshot) find(kid, alg string) []*verifyKey {
	if s == nil {
		return nil
	}
	usable := func(k *verifyKey) bool {
		return (k.alg == "" || k.alg == alg) && algorithms[alg] != nil && algorithms[alg].keyOK(k.raw)
	}
	candidates := s.all
	if kid != "" {
		candidates = s.byKID[kid]
	}
	var keys []*verifyKey
	for _, k := range candidates {
		if usable(k) {
			if keys = append(keys, k); len(keys) == maxKeysTried {
				break
			}
		}
	}
	return keys
}

// refreshIfDue refreshes the set when its scheduled time has come.
func (ks *keySet) refreshIfDue(ctx context.Context, now time.Time) {
	ks.mu.Lock()
	due := ks.inflight == nil && !now.Before(ks.next)
	ks.mu.Unlock()
	if due {
		_ = ks.refresh(ctx, now)
	}
}

// refresh fetches the JWKS once, or waits for the fetch already running.
// The fetch runs on a context detached from ctx's cancellation (the result
// serves every waiter) and bounded by fetchTimeout.
func (ks *keySet) refresh(ctx context.Context, now time.Time) error {
	ks.mu.Lock()
	if ch := ks.inflight; ch != nil {
		ks.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		ks.mu.Lock()
		defer ks.mu.Unlock()
		return ks.lastErr
	}
	ch := make(chan struct{})
	ks.inflight, ks.lastTry = ch, now
	ks.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	snap, maxAge, err := ks.fetch(fctx, now)
	cancel()
	if ks.observe != nil {
		ks.observe(ks.issuer, err)
	}

	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.inflight, ks.lastErr = nil, err
	close(ch)
	if err != nil {
		ks.failures++
		backoff := ks.minInterval << min(ks.failures-1, 16)
		ks.next = now.Add(min(backoff, ks.every))
		return err
	}
	ks.failures = 0
	ks.snap.Store(snap)
	clear(ks.missing)
	wait := ks.every
	if maxAge > 0 {
		wait = min(max(maxAge, ks.minInterval), ks.every)
	}
	ks.next = now.Add(wait)
	return nil
}

// fetch resolves the JWKS URI (discovering it when not configured), GETs
// the set and keeps its asymmetric signing keys.
func (ks *keySet) fetch(ctx context.Context, now time.Time) (*keySnapshot, time.Duration, error) {
	uri, err := ks.resolveJWKSURI(ctx)
	if err != nil {
		return nil, 0, err
	}
	body, hdr, err := get(ctx, ks.client, uri)
	if err != nil {
		return nil, 0, err
	}
	// RFC 7517 §5: "Implementations SHOULD ignore JWKs within a JWK Set
	// that use kty values that are not understood by them, that are
	// missing required members, or for which values are out of the
	// supported ranges": one such key must not hide the others.
	set, err := jwk.Parse(body, jwk.WithIgnoreParseError(true))
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS of %s does not parse: %w", ks.issuer, err)
	}
	snap := &keySnapshot{byKID: make(map[string][]*verifyKey, set.Len()), fetchedAt: now}
	for i := 0; i < set.Len(); i++ {
		key, _ := set.Key(i)
		if use := key.KeyUsage(); use != "" && use != "sig" {
			continue
		}
		raw, err := jwk.PublicRawKeyOf(key)
		if err != nil || !validPublicKey(raw) {
			continue
		}
		switch raw.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue // symmetric keys never verify anything here
		}
		k := &verifyKey{kid: key.KeyID(), alg: key.Algorithm().String(), raw: raw}
		snap.all = append(snap.all, k)
		if k.kid != "" {
			snap.byKID[k.kid] = append(snap.byKID[k.kid], k)
		}
	}
	if len(snap.all) == 0 {
		return nil, 0, fmt.Errorf("%s: %w", uri, errNoUsableKeys)
	}
	return snap, cacheMaxAge(hdr.Get("Cache-Control")), nil
}

func (ks *keySet) resolveJWKSURI(ctx context.Context) (string, error) {
	if ks.configured != "" {
		return ks.configured, nil
	}
	ks.mu.Lock()
	uri := ks.jwksURI
	ks.mu.Unlock()
	if uri != "" {
		return uri, nil
	}
	md, err := Discover(ctx, ks.client, ks.issuer)
	if err != nil {
		return "", err
	}
	if md.JWKSURI == "" {
		return "", fmt.Errorf("metadata of %s has no jwks_uri", ks.issuer)
	}
	ks.mu.Lock()
	ks.md, ks.jwksURI = md, md.JWKSURI
	ks.mu.Unlock()
	return md.JWKSURI, nil
}

// cacheMaxAge reads max-age from a Cache-Control value; 0 when absent.
func cacheMaxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		if strings.EqualFold(name, "max-age") {
			if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n > 0 {
				return time.Duration(min(n, 1<<30)) * time.Second
			}
		}
	}
	return 0
}

// state reports whether keys are loaded, and when they were fetched.
func (ks *keySet) state() (loaded bool, fetchedAt time.Time) {
	if s := ks.snap.Load(); s != nil {
		return true, s.fetchedAt
	}
	return false, time.Time{}
}
