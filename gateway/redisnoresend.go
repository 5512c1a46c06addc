package gateway

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// noResend is a hook on every node of a Redis Cluster client that keeps a
// command from being sent a second time once its outcome is unknown.
//
// MaxRetries -1 turns go-redis's retries off on one server and under a
// Sentinel, but a ClusterClient also sends a command again, up to
// MaxRedirects (3) times, after a failure that is no answer from Redis (a
// connection reset, an EOF): Redis may have run it, and a SET NX sent
// again then refuses the proof's first and only use as "already used",
// and a script sent again takes a second token. Turning MaxRedirects off
// would also stop the client following MOVED and ASK, which Redis answers
// without running the command, and a slot being migrated would then fail
// every call on it. So the command is left to the redirections, and this
// hook answers a command that already holds an error other than Redis's
// own answer (it has been sent and failed) with that error instead of
// sending it again.
type noResend struct{}

func (noResend) DialHook(next redis.DialHook) redis.DialHook { return next }

func (noResend) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := cmd.Err(); outcomeUnknown(err) {
			return err
		}
		return next(ctx, cmd)
	}
}

func (noResend) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var unknown error
		send := make([]redis.Cmder, 0, len(cmds))
		for _, cmd := range cmds {
			if err := cmd.Err(); outcomeUnknown(err) {
				unknown = err
				continue
			}
			send = append(send, cmd)
		}
		if len(send) == 0 {
			return unknown
		}
		if len(send) == len(cmds) {
			return next(ctx, cmds)
		}
		return errors.Join(next(ctx, send), unknown)
	}
}

// outcomeUnknown reports whether err is a failure after which a command
// may or may not have run: any error but a reply of Redis's (MOVED, ASK,
// CLUSTERDOWN, TRYAGAIN, LOADING… are refusals of a command not run).
func outcomeUnknown(err error) bool {
	var answer redis.Error
	return err != nil && !errors.As(err, &answer)
}
