package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a replay store in Redis, shared by every replica that uses the
// same Redis and prefix: a proof claimed through one replica is refused by
// all the others. It is safe for concurrent use, and works with any
// redis.UniversalClient (one server, Sentinel, Cluster).
//
// A claim is one command, SET <prefix>replay:{<key>} 1 NX PX <ttl in ms>,
// atomic on the server: of any number of concurrent claims of a key, from
// any number of replicas, exactly one succeeds. The key lives for ttl
// rounded up to the millisecond, never less, and Redis deletes it when it
// expires. The hash tag {<key>} pins all of one claim's data to one Cluster
// slot.
//
// Redis bounds its memory with maxmemory, not a key count, so Claim never
// returns ErrFull. Give the replay store a maxmemory-policy that never
// evicts a live claim (noeviction, or a volatile-* policy on a Redis that
// holds nothing else with a TTL): an evicted claim is a proof that can be
// replayed. With noeviction a full Redis makes Claim fail, which the
// gateway treats as an unavailable store.
//
// Create a Redis with NewRedis; the zero Redis is not usable.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis returns a store that keeps its keys in c under prefix (for
// example "dpopgate:"). It does not contact Redis.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix}
}

// Claim records key for ttl if it is not already recorded, with one
// round trip to Redis. It returns ErrReplayed if key is live, an error
// if ttl is not positive, and the client's error (wrapped) if Redis did
// not answer, in which case the key may or may not have been recorded.
// The caller bounds the wait with ctx.
func (r *Redis) Claim(ctx context.Context, key string, ttl time.Duration) error {
	args, err := r.claimArgs(key, ttl)
	if err != nil {
		return err
	}
	return claimResult(r.c.Do(ctx, args...))
}

// ClaimIn queues the claim of key on p, to go to Redis with whatever else
// p carries in one round trip, and returns the function that reports the
// claim's outcome (as Claim would) once p has been executed. Calling it
// before p.Exec returns an error. A bad ttl queues nothing; the function
// then reports the error.
func (r *Redis) ClaimIn(ctx context.Context, p redis.Pipeliner, key string, ttl time.Duration) (result func() error) {
	args, err := r.claimArgs(key, ttl)
	if err != nil {
		return func() error { return err }
	}
	cmd := p.Do(ctx, args...)
	return func() error { return claimResult(cmd) }
}

// claimArgs is the SET command of a claim.
func (r *Redis) claimArgs(key string, ttl time.Duration) ([]any, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("replay: claim with ttl %v, want a positive ttl", ttl)
	}
	// Rounded up: a key that expired before its ttl would let a replay in.
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	if ttl > time.Duration(1<<63-1)-time.Millisecond {
		ms = ttl / time.Millisecond
	}
	return []any{"set", r.prefix + "replay:{" + key + "}", "1", "nx", "px", int64(ms)}, nil
}

// claimResult reads the reply to a claim's SET NX: OK when the key was
// set, nil when it was already there.
func claimResult(cmd *redis.Cmd) error {
	v, err := cmd.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return ErrReplayed
	case err != nil:
		return fmt.Errorf("replay: redis SET NX: %w", err)
	}
	if s, ok := v.(string); !ok || s != "OK" {
		return fmt.Errorf("replay: redis SET NX: unexpected reply of type %T", v)
	}
	return nil
}
