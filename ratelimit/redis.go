package ratelimit

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed redis.lua
var bucketLua string

// bucketScript takes one decision on one bucket; see redis.lua.
var bucketScript = redis.NewScript(bucketLua)

// Redis is the "redis" backend: token buckets in Redis, one budget shared
// by every replica that uses the same Redis and prefix. It is safe for
// concurrent use, and works with any redis.UniversalClient (one server,
// Sentinel, Cluster).
//
// A decision is one Lua script (EVALSHA, falling back to EVAL when the
// server does not have it cached), atomic on the server and timed by the
// server's clock (TIME), so replicas whose clocks disagree still share
// one bucket. The script does golang.org/x/time/rate's arithmetic, as
// Memory does, and the Decision is computed by the same function, so the
// two backends answer alike; see Memory.AllowN for the contract. Time on
// the server has microsecond resolution.
//
// A bucket is one string, <prefix>bucket:{<key>}, of 32 bytes: its
// tokens, when it last changed, and the rate and burst it was last used
// with, as four little-endian float64s; the hash tag keeps it in one
// Cluster slot. It expires when it would have refilled (a full bucket
// carries no information: a missing one is full), so Redis holds only the
// buckets in use. A call that takes nothing, or is denied, writes nothing
// unless the Limit changed. A full bucket is a missing one here even
// before it expires: a new, larger burst finds it full, where Memory,
// until it drops the full bucket, keeps its old burst's tokens. (Buckets
// used to be hashes under <prefix>rl:{<key>}; the new name keeps replicas
// of the two versions off each other's keys during a rolling upgrade, at
// the price of a budget each until it ends.)
//
// Create a Redis with NewRedis; the zero Redis is not usable.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis returns a limiter that keeps its buckets in c under prefix (for
// example "dpopgate:"). It does not contact Redis.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix}
}

// AllowN takes n tokens from the bucket named key under limit l if it
// holds that many, with one round trip to Redis, and reports the outcome
// as Memory.AllowN does. Reset is this host's clock when the answer came
// plus the refill time computed on Redis's clock, so a skew between the
// two clocks does not show in the headers. It returns an error, and no
// Decision, when Redis did not answer or answered something else than the
// script's reply; the token may then have been taken or not. The caller
// bounds the wait with ctx. The unlimited Limit is allowed without a call.
func (r *Redis) AllowN(ctx context.Context, key string, l Limit, n int) (Decision, error) {
	if l.Unlimited() {
		return Decision{Allowed: true, Limit: l.Count, Reset: time.Now()}, nil
	}
	n = max(n, 0)
	keys, args := r.scriptArgs(key, l, n)
	return decision(l, n, bucketScript.Run(ctx, r.c, keys, args...))
}

// AllowNIn queues the decision AllowN would take on p (EVALSHA), to go to
// Redis with whatever else p carries in one round trip, and returns the
// function that reports it once p has been executed. If the server had
// lost the script (a restart, a failover, SCRIPT FLUSH), the function
// runs it again with EVAL, which sends and caches it: a second round trip,
// bounded by ctx, once per server that lost it. Call the function once,
// after p.Exec; it is not safe for concurrent use.
func (r *Redis) AllowNIn(ctx context.Context, p redis.Pipeliner, key string, l Limit, n int) (result func() (Decision, error)) {
	if l.Unlimited() {
		return func() (Decision, error) {
			return Decision{Allowed: true, Limit: l.Count, Reset: time.Now()}, nil
		}
	}
	n = max(n, 0)
	keys, args := r.scriptArgs(key, l, n)
	reply := r.queue(ctx, p, keys, args)
	return func() (Decision, error) { return decision(l, n, reply()) }
}

// queue queues the script on p (EVALSHA) and returns the function that
// gives its reply once p has been executed, after running it again with
// EVAL if the server had lost it.
func (r *Redis) queue(ctx context.Context, p redis.Pipeliner, keys []string, args []any) func() *redis.Cmd {
	cmd := bucketScript.EvalSha(ctx, p, keys, args...)
	return func() *redis.Cmd {
		if err := cmd.Err(); errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT") {
			// EVALSHA failed before the script ran: nothing was taken.
			cmd = bucketScript.Eval(ctx, r.c, keys, args...)
		}
		return cmd
	}
}

// AllowCapped takes one token from the bucket key under l and one from the
// bucket capKey under capL, as Capped describes, with one round trip to
// Redis: one script runs the look at the cap, the take from the bucket and
// the take from the cap, atomically, so that no other call comes between
// them. Errors are as AllowN's. The cap is the bucket capKey as AllowN
// names it; the bucket is kept under a name of its own that is hashed on
// capKey (<prefix>bucket:{<capKey>}<key>), so that a Cluster keeps both in
// one slot: a bucket used under a cap is not the one AllowN(key) uses.
// With an unlimited l or capL, the steps are AllowN calls on key and
// capKey, a round trip each for a limited one.
func (r *Redis) AllowCapped(ctx context.Context, key string, l Limit, capKey string, capL Limit) (Capped, error) {
	if l.Unlimited() || capL.Unlimited() {
		return allowCapped(ctx, r.AllowN, key, l, capKey, capL)
	}
	keys, args := r.cappedArgs(key, l, capKey, capL)
	return capped(l, capL, bucketScript.Run(ctx, r.c, keys, args...))
}

// AllowCappedIn queues on p the decision AllowCapped takes, as AllowNIn
// does. l and capL must not be unlimited.
func (r *Redis) AllowCappedIn(ctx context.Context, p redis.Pipeliner, key string, l Limit, capKey string, capL Limit) (result func() (Capped, error)) {
	keys, args := r.cappedArgs(key, l, capKey, capL)
	reply := r.queue(ctx, p, keys, args)
	return func() (Capped, error) { return capped(l, capL, reply()) }
}

// cappedArgs are the KEYS and ARGV of redis.lua for a bucket under a cap.
func (r *Redis) cappedArgs(key string, l Limit, capKey string, capL Limit) ([]string, []any) {
	capName := r.prefix + "bucket:{" + capKey + "}"
	return []string{capName + key, capName},
		[]any{pack(l.PerSecond(), float64(l.Capacity()), 1), pack(capL.PerSecond(), float64(capL.Capacity()))}
}

// scriptArgs are the KEYS and ARGV of redis.lua: the bucket's key, and
// the rate, burst and n packed as three little-endian float64s (the
// burst is at most 999999999999999 and n is compared with it, so the
// floats say what the ints do).
func (r *Redis) scriptArgs(key string, l Limit, n int) ([]string, []any) {
	return []string{r.prefix + "bucket:{" + key + "}"},
		[]any{pack(l.PerSecond(), float64(l.Capacity()), float64(n))}
}

// pack is fs as little-endian float64s, struct's "<d..." in redis.lua.
func pack(fs ...float64) string {
	b := make([]byte, 0, 24)
	for _, f := range fs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return string(b)
}

// decision reads the script's reply for one bucket, allowed and tokens as
// two little-endian float64s, checking its every part, and turns it into
// the Decision.
func decision(l Limit, n int, cmd *redis.Cmd) (Decision, error) {
	reply, err := packedReply(cmd, 16)
	if err != nil {
		return Decision{}, err
	}
	return replyDecision(l, n, reply)
}

// capped reads the script's reply for a bucket under a cap, the bucket's
// allowed and tokens and then the cap's, as four little-endian float64s,
// and turns it into the Capped. Both allowed 0 means the cap refused at
// the look, and the bucket was left alone.
func capped(l, capL Limit, cmd *redis.Cmd) (Capped, error) {
	reply, err := packedReply(cmd, 32)
	if err != nil {
		return Capped{}, err
	}
	var c Capped
	if c.Cap, err = replyDecision(capL, 0, reply[16:]); err != nil || !c.Cap.Allowed && reply[:8] == notAllowed {
		return c, err
	}
	if c.Bucket, err = replyDecision(l, 1, reply[:16]); err != nil || !c.Bucket.Allowed {
		return c, err
	}
	c.Cap, err = replyDecision(capL, 1, reply[16:]) // the take, not the look
	return c, err
}

// notAllowed is a packed 0, what the script replies for allowed 0.
var notAllowed = pack(0)

// packedReply is the script's reply, a string of size bytes.
func packedReply(cmd *redis.Cmd, size int) (string, error) {
	v, err := cmd.Result()
	if err != nil {
		return "", fmt.Errorf("ratelimit: redis: %w", err)
	}
	reply, ok := v.(string)
	if !ok || len(reply) != size {
		return "", fmt.Errorf("ratelimit: redis: unexpected reply of type %T, want %d bytes", v, size)
	}
	return reply, nil
}

// replyDecision turns one bucket's allowed and tokens, two little-endian
// float64s, into the Decision for a take of n under l, checking each.
func replyDecision(l Limit, n int, reply string) (Decision, error) {
	allowed := math.Float64frombits(binary.LittleEndian.Uint64([]byte(reply[:8])))
	if allowed != 0 && allowed != 1 {
		return Decision{}, fmt.Errorf("ratelimit: redis: unexpected allowed %v, want 0 or 1", allowed)
	}
	tokens := math.Float64frombits(binary.LittleEndian.Uint64([]byte(reply[8:16])))
	// The script caps tokens at the burst, and a take overdraws by less
	// than a nanosecond's refill (rate.Limiter grants a wait under 1ns).
	if math.IsNaN(tokens) || tokens < -max(1, l.PerSecond()/1e9) || tokens > float64(l.Capacity()) {
		return Decision{}, fmt.Errorf("ratelimit: redis: tokens %v out of range", tokens)
	}
	return decide(l, time.Now(), tokens, n, allowed == 1), nil
}
