package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/ratelimit"
)

// limiter is what the gateway needs of a rate-limit backend
// (ratelimit.Memory, ratelimit.Redis): a bucket, and a bucket under the
// anonymous_ip_cap.
type limiter interface {
	AllowN(ctx context.Context, key string, l ratelimit.Limit, n int) (ratelimit.Decision, error)
	AllowCapped(ctx context.Context, key string, l ratelimit.Limit, capKey string, capL ratelimit.Limit) (ratelimit.Capped, error)
}

const (
	tierAnonymous = "anonymous"
	tierClient    = "client"
)

// tierOf names the tier of a request (spec §3.7): anonymous without a
// token; the tier claim's value when it names a configured tier (other than
// anonymous); client otherwise.
func tierOf(p *auth.Principal, tiers map[string]ratelimit.Limit) string {
	if p == nil {
		return tierAnonymous
	}
	if p.Tier != "" && p.Tier != tierAnonymous {
		if _, ok := tiers[p.Tier]; ok {
			return p.Tier
		}
	}
	return tierClient
}

// bucketOf names the request's tier (in x.tier) and returns its bucket and
// limit on the route; ok is false when the tier is not limited there.
func bucketOf(s *snapshot, x *exchange) (key string, l ratelimit.Limit, ok bool) {
	x.tier, key, l, ok = bucketFor(s, x)
	return key, l, ok
}

// bucketFor is bucketOf without a side effect.
func bucketFor(s *snapshot, x *exchange) (tier, key string, l ratelimit.Limit, ok bool) {
	tier = tierOf(x.principal, s.tiers)
	l, ok = x.route.limits[tier]
	if !ok || l.Unlimited() {
		return tier, "", ratelimit.Limit{}, false
	}
	return tier, bucketKey(x.route.name, tier, x.principal, limitKey(x.ip)), l, true
}

// policyAuthFailures names the auth_failures budget in the rate-limit
// headers of the 429 it causes.
const policyAuthFailures = "auth_failures"

// policyIPCap names the anonymous_ip_cap budget in the rate-limit headers
// when they show it: it is not the route's anonymous tier, and has its own
// quota.
const policyIPCap = "anonymous_ip_cap"

// bucketKey names a bucket: per route, per tier, per client. Clients are
// keyed by issuer and client_id, anonymous callers by address (IPv6 /64).
func bucketKey(route, tier string, p *auth.Principal, ipKey string) string {
	if p == nil {
		return route + "|" + tier + "|ip:" + ipKey
	}
	return route + "|" + tier + "|" + p.Issuer + "|" + p.ClientID
}

// writeLimitHeaders sets the rate-limit fields of every answer on a limited
// route: the de-facto X-RateLimit-* trio (Reset in Unix seconds, when the
// bucket is full again, rounded up) and the IETF RateLimit-Policy /
// RateLimit fields (draft-ietf-httpapi-ratelimit-headers: quota q over
// window w seconds; remaining r, and t seconds until the quota is back).
func writeLimitHeaders(h http.Header, tier string, l ratelimit.Limit, d ratelimit.Decision, now time.Time) {
	reset := d.Reset
	if reset.Before(now) {
		reset = now
	}
	until := ceilSeconds(reset.Sub(now))
	// X-RateLimit-Reset is an instant: reset's Unix second, rounded up
	// (now.Unix()+until would round now down, up to a second early).
	resetUnix := reset.Unix()
	if reset.Nanosecond() > 0 {
		resetUnix++
	}
	remaining := strconv.Itoa(d.Remaining)
	// One backing array for the five values, and the keys in canonical
	// form (as http.Header.Set would make them), written directly: this
	// runs on every answer.
	v := [5]string{
		strconv.Itoa(d.Limit),
		remaining,
		strconv.FormatInt(resetUnix, 10),
		`"` + tier + `";q=` + strconv.Itoa(l.Count) + ";w=" + strconv.FormatInt(ceilSeconds(l.Period), 10),
		`"` + tier + `";r=` + remaining + ";t=" + strconv.FormatInt(until, 10),
	}
	h["X-Ratelimit-Limit"] = v[0:1:1]
	h["X-Ratelimit-Remaining"] = v[1:2:2]
	h["X-Ratelimit-Reset"] = v[2:3:3]
	h["Ratelimit-Policy"] = v[3:4:4]
	h["Ratelimit"] = v[4:5:5]
}
