package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/dpopgate/dpopgate/config"
	"github.com/dpopgate/dpopgate/gateway/auth"
	"github.com/dpopgate/dpopgate/ratelimit"
	"github.com/dpopgate/dpopgate/replay"
)

// errNotLimited is what a limiter returns, instead of a Decision, when it
// could not decide and is configured to let the request through
// (rate_limits.on_error: fail_open): the request goes on, without
// rate-limit headers, since there are no numbers to put in them.
var errNotLimited = errors.New("ratelimit: no decision, letting the request through (on_error: fail_open)")

// redisBackends are the replay store and the limiter on one Redis client,
// each call bounded by redis.timeout, with the failure modes of the config.
// It implements replayStore and limiter. Its methods are safe for
// concurrent use.
type redisBackends struct {
	client  redis.UniversalClient
	timeout time.Duration
	replay  *replay.Redis    // nil unless replay.backend is redis
	limits  *ratelimit.Redis // nil unless rate_limits.backend is redis
	// onError is rate_limits.on_error (nil: fail_closed), swapped by
	// Reload; local is the fallback of local, there whatever onError says
	// so that a reload can choose it.
	onError atomic.Pointer[string]
	local   *ratelimit.Memory
	metrics *metrics
	log     *slog.Logger
	warn    rate.Sometimes // at most one fallback warning per warnEvery
	// evictionMu is held while a ping goes on to read whether Redis may
	// evict keys (warnEviction), until evictionRead: once per process.
	evictionMu   sync.Mutex
	evictionRead bool
	server       string // how the log names the server, if not a Cluster

	batch *redisBatch // every call goes through it
}

// warnEvery is how often a failure-mode warning repeats during an outage:
// one line now and then, not one per request (the metrics count each).
const warnEvery = 10 * time.Second

// useRedis builds the Redis client and the backends the config puts on it,
// unless opts supplies them. It connects to nothing: the client dials on
// first use.
func (g *Gateway) useRedis(cfg *config.Config, opts Options) error {
	replayOn := cfg.Replay.Backend == config.BackendRedis && opts.Replay == nil
	limitsOn := cfg.RateLimits.Backend == config.BackendRedis && opts.Limiter == nil
	if !replayOn && !limitsOn {
		return nil
	}
	o, err := cfg.Redis.UniversalOptions()
	if err != nil {
		return err
	}
	b := &redisBackends{
		client:  newRedisClient(o),
		timeout: time.Duration(cfg.Redis.Timeout),
		metrics: g.metrics,
		log:     g.log,
		warn:    rate.Sometimes{Interval: warnEvery},
		server:  o.Addrs[0],
	}
	if cfg.Redis.Mode == config.RedisSentinel {
		b.server = "the primary " + cfg.Redis.MasterName + " (Sentinel)"
	}
	if replayOn {
		b.replay = replay.NewRedis(b.client, cfg.Redis.Prefix)
		g.replay = b
	}
	if limitsOn {
		b.limits = ratelimit.NewRedis(b.client, cfg.Redis.Prefix)
		b.local = ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: cfg.RateLimits.MaxKeys, Clock: g.clock})
		g.limits = b
		// Failed authentications are counted per replica: the budget
		// guards the crypto of this process, and keeping it off Redis
		// keeps a request to one round trip and a flood of bad tokens
		// off Redis altogether.
		g.authLimits = ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: cfg.RateLimits.MaxKeys, Clock: g.clock})
	}
	b.reload(cfg)
	b.batch = newRedisBatch(b)
	g.redis = b
	return nil
}

// newRedisClient is redis.NewUniversalClient, with the noResend hook on
// every node of a Cluster.
func newRedisClient(o *redis.UniversalOptions) redis.UniversalClient {
	c := redis.NewUniversalClient(o)
	if cc, ok := c.(*redis.ClusterClient); ok {
		// Before the first call: nodes are made when the client first
		// loads the slot map.
		cc.OnNewNode(func(n *redis.Client) { n.AddHook(noResend{}) })
	}
	return c
}

// reload takes on the settings of cfg that a running gateway can change:
// rate_limits.on_error. (The client's settings need a restart.)
func (b *redisBackends) reload(cfg *config.Config) {
	onError := cfg.RateLimits.OnError
	b.onError.Store(&onError)
}

// Close releases the Redis connections, if the gateway has any. Call it
// once the servers have stopped; a request after Close meets the
// configured failure modes. Close is safe to call on any Gateway.
func (g *Gateway) Close() error {
	if g.redis == nil {
		return nil
	}
	g.redis.batch.close()
	return g.redis.client.Close()
}

// claimAndLimit claims the proof and takes the request's rate-limit
// decision in one round trip when both backends are on Redis and the
// request's tier is limited on its route; otherwise it does nothing and
// returns nil.
func (g *Gateway) claimAndLimit(ctx context.Context, s *snapshot, x *exchange, p *auth.Proof) *admission {
	b := g.redis
	if b == nil || b.replay == nil || b.limits == nil {
		return nil
	}
	key, l, ok := bucketOf(s, x)
	if !ok {
		return nil
	}
	a := b.claimAllowN(ctx, p.ReplayKey, s.verifier.ReplayTTL(), key, l, 1)
	return &a
}

// redisCall is a kind of Redis round trip, as the metrics count it.
type redisCall uint8

const (
	opClaim         redisCall = iota // a replay claim alone
	opDecision                       // a rate-limit decision alone
	opClaimDecision                  // both, pipelined
	opPing                           // /readyz
	redisCalls
)

// redisCallLabels are the redisCalls' op labels.
var redisCallLabels = [redisCalls]string{"claim", "decision", "claim_decision", "ping"}

// Claim is replay.Redis.Claim within redis.timeout, batched with the
// other requests' Redis work.
func (b *redisBackends) Claim(ctx context.Context, key string, ttl time.Duration) error {
	return b.batch.do(ctx, &redisOp{claimKey: key, ttl: ttl}).claimErr
}

// AllowN is ratelimit.Redis.AllowN within redis.timeout, batched with the
// other requests' Redis work, and, when Redis fails, rate_limits.on_error.
func (b *redisBackends) AllowN(ctx context.Context, key string, l ratelimit.Limit, n int) (ratelimit.Decision, error) {
	r := b.batch.do(ctx, &redisOp{bucketKey: key, limit: l, n: n})
	if r.limitErr != nil {
		return b.fallback(ctx, key, l, n, r.limitErr)
	}
	return r.decision, nil
}

// AllowCapped is ratelimit.Redis.AllowCapped within redis.timeout, batched
// with the other requests' Redis work, and, when Redis fails,
// rate_limits.on_error.
func (b *redisBackends) AllowCapped(ctx context.Context, key string, l ratelimit.Limit, capKey string, capL ratelimit.Limit) (ratelimit.Capped, error) {
	r := b.batch.do(ctx, &redisOp{bucketKey: key, limit: l, n: 1, capKey: capKey, capLimit: capL})
	if r.limitErr != nil {
		return b.fallbackCapped(ctx, key, l, capKey, capL, r.limitErr)
	}
	return r.capped, nil
}

// failure is err unless it is an answer rather than a failure (a replayed
// proof).
func failure(err error) error {
	if errors.Is(err, replay.ErrReplayed) {
		return nil
	}
	return err
}

// admission is a replay claim and a rate-limit decision taken together.
type admission struct {
	claimErr error              // as Claim returns it
	decision ratelimit.Decision // as AllowN returns it
	limitErr error
}

// claimAllowN claims claimKey for ttl and takes n tokens from the bucket
// bucketKey under l, in one round trip (two commands of one pipeline, on
// two nodes at once for a Cluster), within one redis.timeout. The decision
// is taken whatever the claim's outcome: a replayed proof costs its client
// a token, which the auth-failure budget of the sender's address bounds.
func (b *redisBackends) claimAllowN(ctx context.Context, claimKey string, ttl time.Duration, bucketKey string, l ratelimit.Limit, n int) admission {
	r := b.batch.do(ctx, &redisOp{claimKey: claimKey, ttl: ttl, bucketKey: bucketKey, limit: l, n: n})
	a := admission{claimErr: r.claimErr, decision: r.decision, limitErr: r.limitErr}
	if a.limitErr != nil {
		a.decision, a.limitErr = b.fallback(ctx, bucketKey, l, n, a.limitErr)
	}
	return a
}

// fallback answers for a decision Redis could not take, as
// rate_limits.on_error says: this replica's own bucket (local), no
// decision at all (fail_open: errNotLimited), or the error (fail_closed).
func (b *redisBackends) fallback(ctx context.Context, key string, l ratelimit.Limit, n int, err error) (ratelimit.Decision, error) {
	if err := b.degrade(err); err != nil {
		return ratelimit.Decision{}, err
	}
	return b.local.AllowN(ctx, key, l, n)
}

// fallbackCapped is fallback for a decision under a cap.
func (b *redisBackends) fallbackCapped(ctx context.Context, key string, l ratelimit.Limit, capKey string, capL ratelimit.Limit, err error) (ratelimit.Capped, error) {
	if err := b.degrade(err); err != nil {
		return ratelimit.Capped{}, err
	}
	return b.local.AllowCapped(ctx, key, l, capKey, capL)
}

// degrade counts, and warns of, a decision Redis could not take, and
// returns nil when this replica's buckets are to answer it (on_error:
// local), errNotLimited for fail_open, and err for fail_closed.
func (b *redisBackends) degrade(err error) error {
	mode := config.FailClosed
	if p := b.onError.Load(); p != nil {
		mode = *p
	}
	switch mode {
	case config.FailLocal:
		b.metrics.limiterLocal.Inc()
		b.warnFallback("rate limiter: Redis failed, using this replica's buckets (on_error: local)", err)
		return nil
	case config.FailOpen:
		b.metrics.limiterFailOpen.Inc()
		b.warnFallback("rate limiter: Redis failed, not limiting (on_error: fail_open)", err)
		return errNotLimited
	default:
		return err
	}
}

// warnFallback logs a warning at most once per warnEvery (the metrics
// count every time). The error names the Redis address, never a
// credential.
func (b *redisBackends) warnFallback(msg string, err error) {
	b.warn.Do(func() {
		b.log.Warn(msg, "error", err.Error())
	})
}

// acceptUnchecked counts a proof accepted without a replay check because
// the store failed (replay.on_error: fail_open), and says so in the log at
// most once per warnEvery.
func (g *Gateway) acceptUnchecked(err error) {
	g.metrics.replayFailOpen.Inc()
	g.replayWarn.Do(func() {
		g.log.Warn("replay store unavailable, accepting proofs unchecked (on_error: fail_open)", "error", err.Error())
	})
}

// ping checks that Redis answers within redis.timeout: the server, or for
// a Cluster every master.
func (b *redisBackends) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	start := time.Now()
	var err error
	if c, ok := b.client.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	} else {
		err = b.client.Ping(ctx).Err()
	}
	b.metrics.observeRedis(opPing, time.Since(start), err)
	if err == nil && b.evictionMu.TryLock() { // else another /readyz reads
		defer b.evictionMu.Unlock()
		if !b.evictionRead {
			// A timeout of its own: the first ping may have spent the
			// ping's on connecting.
			ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
			defer cancel()
			b.evictionRead = b.warnEviction(ictx)
		}
	}
	return err
}

// warnEviction reads, with INFO memory, whether Redis may evict keys
// (maxmemory set, and a policy other than noeviction: every key of ours
// has an expiry, so the volatile-* policies take them too), on every
// master of a Cluster, and warns of each server that may: an evicted
// claim lets its proof be replayed, and an evicted bucket is a full one.
// It reports whether every server answered: a server that refuses INFO
// (an ACL user without +info) is said so in the log and not asked again;
// one that fails is asked again at the next ping.
func (b *redisBackends) warnEviction(ctx context.Context) (answered bool) {
	// read returns an error only for a server to ask again.
	read := func(ctx context.Context, c *redis.Client, server string) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			var refusal redis.Error
			if !errors.As(err, &refusal) {
				return err
			}
			b.log.Info("cannot read Redis's eviction settings: INFO memory refused (+info in dpopgate's ACL user allows it)",
				"server", server, "error", err.Error())
			return nil
		}
		var maxmemory, policy string
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "maxmemory:"); ok {
				maxmemory = v
			} else if v, ok := strings.CutPrefix(line, "maxmemory_policy:"); ok {
				policy = v
			}
		}
		if maxmemory != "" && maxmemory != "0" && policy != "" && policy != "noeviction" {
			b.log.Warn("Redis may evict dpopgate's keys: an evicted replay claim lets its proof be replayed, an evicted bucket starts full; set maxmemory-policy noeviction",
				"server", server, "maxmemory", maxmemory, "maxmemory_policy", policy)
		}
		return nil
	}
	if cc, ok := b.client.(*redis.ClusterClient); ok {
		// Every master is read, whichever fail.
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return read(ctx, m, m.Options().Addr) }) == nil
	}
	if c, ok := b.client.(*redis.Client); ok {
		return read(ctx, c, b.server) == nil
	}
	return true
}
