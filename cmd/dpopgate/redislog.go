package main

import (
	"context"
	"fmt"
	"log/slog"
)

// redisLog sends the go-redis client's own messages (a pool that cannot
// dial, say) to the gateway's logger as warnings, so that they come out as
// JSON lines like the rest. go-redis writes addresses and errors there,
// not credentials.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}
