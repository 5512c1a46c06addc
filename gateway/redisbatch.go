package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dpopgate/dpopgate/ratelimit"
)

// redisBatch coalesces the Redis operations of concurrent requests into
// pipelines. A request still waits for exactly one round trip, but the
// requests that arrive while a round trip is under way share the next
// one, so the system calls and Redis's per-connection work are paid per
// batch rather than per request (rueidis calls this auto-pipelining).
//
// One pipeline is in flight at a time (sending holds mu). A request that
// finds none in flight sends its own operation, with whatever is queued,
// on its own goroutine, at once: a request that comes alone pays one round
// trip and no hand-off to another goroutine (which, on an idle machine,
// means waking a thread: a claim took 1.40x a bare SET NX round trip
// through the worker, 1.02x without it, in BenchmarkRedisRoundTrip on the
// README's VM); and an operation of one command that goes alone goes as
// that command, not as a pipeline of one (sendOne). A request that finds one in flight queues its operation,
// and one worker, started by newRedisBatch and stopped by close, sends
// what is queued as the next pipeline. (With more pipelines in flight the
// batches stay small; on the 2-core machine of the README a single worker
// took dpop-redis from 0.70x to 0.80x of dpop over three runs each, and
// halved Redis's CPU per request.) The queue is bounded. Safe for
// concurrent use.
type redisBatch struct {
	b       *redisBackends
	mu      sync.Mutex // held while a pipeline is in flight
	ops     chan *redisOp
	quit    chan struct{}
	closing sync.Once
	wg      sync.WaitGroup
}

const (
	redisBatchWorkers = 1    // pipelines in flight at once
	redisBatchMax     = 128  // operations per pipeline
	redisQueue        = 4096 // operations waiting for a worker
)

// redisOp is one request's Redis work: a replay claim, a rate-limit
// decision (on one bucket, or on a bucket under a cap), or a claim and a
// decision on one bucket. A queued op's outcome comes back on out, which
// has room for it, so a worker never waits for a request that gave up; an
// op its own request sends (out nil) keeps it in result.
type redisOp struct {
	ctx       context.Context // the request's: a cancelled one is skipped
	claimKey  string          // "" for no claim
	ttl       time.Duration
	bucketKey string // "" for no decision
	limit     ratelimit.Limit
	n         int
	capKey    string // "" for a decision on one bucket; else n is 1
	capLimit  ratelimit.Limit
	out       chan redisResult
	result    redisResult
}

// deliver hands op its outcome.
func (op *redisOp) deliver(r redisResult) {
	if op.out == nil {
		op.result = r // its own request sends it, and reads this when done
		return
	}
	op.out <- r
}

// redisResult is the outcome of a redisOp, as Claim, AllowN and
// AllowCapped return it.
type redisResult struct {
	claimErr error
	decision ratelimit.Decision
	capped   ratelimit.Capped
	limitErr error
}

var (
	errRedisBusy   = errors.New("redis: too many operations queued")
	errRedisClosed = errors.New("redis: the gateway is closed")
)

func newRedisBatch(b *redisBackends) *redisBatch {
	rb := &redisBatch{b: b, ops: make(chan *redisOp, redisQueue), quit: make(chan struct{})}
	rb.wg.Add(redisBatchWorkers)
	for i := 0; i < redisBatchWorkers; i++ {
		go rb.work()
	}
	return rb
}

// close stops the workers once they have sent what they hold. A second
// close does nothing.
func (rb *redisBatch) close() {
	rb.closing.Do(func() { close(rb.quit) })
	rb.wg.Wait()
}

// do sends op, or queues it, and waits for its outcome, at most about
// redis.timeout in all; a wait that runs out is an error for both halves
// of op.
//
// A request alone sends its op on its own goroutine, bounded by a
// deadline that the sockets enforce rather than a timer (see
// socketDeadline). A queued op waits at most redis.timeout for its turn
// and its round trip together.
func (rb *redisBatch) do(ctx context.Context, op *redisOp) redisResult {
	op.ctx = ctx
	if rb.mu.TryLock() {
		rb.sendNow(op)
		return op.result
	}
	ctx, cancel := context.WithTimeout(ctx, rb.b.timeout)
	defer cancel()
	op.ctx, op.out = ctx, make(chan redisResult, 1)
	select {
	case rb.ops <- op:
	default:
		return redisResult{claimErr: errRedisBusy, limitErr: errRedisBusy}
	}
	select {
	case r := <-op.out:
		return r
	case <-ctx.Done():
		return redisResult{claimErr: ctx.Err(), limitErr: ctx.Err()}
	case <-rb.quit: // closed: no worker will send it
		return redisResult{claimErr: errRedisClosed, limitErr: errRedisClosed}
	}
}

// sendNow sends op, and whatever is queued, as one pipeline from the
// calling goroutine, which holds mu, and releases mu. The pipeline's
// deadline is redis.timeout from now; its cancellation is nobody's, since
// it carries other requests' operations too (each request that gives up
// is left out by send, and stops waiting by itself).
func (rb *redisBatch) sendNow(op *redisOp) {
	defer rb.mu.Unlock()
	ctx := socketDeadline{context.WithoutCancel(op.ctx), time.Now().Add(rb.b.timeout)}
	rb.send(ctx, rb.takeQueued([]*redisOp{op}))
}

func (rb *redisBatch) work() {
	defer rb.wg.Done()
	batch := make([]*redisOp, 0, redisBatchMax)
	for {
		select {
		case op := <-rb.ops:
			batch = append(batch[:0], op)
		case <-rb.quit:
			return
		}
		// Wait for the pipeline in flight, if any, then take along what
		// came in the meantime.
		rb.mu.Lock()
		batch = rb.takeQueued(batch)
		rb.sendQueued(batch)
	}
}

// sendQueued sends batch as one pipeline from the worker, which holds mu,
// and releases mu.
func (rb *redisBatch) sendQueued(batch []*redisOp) {
	defer rb.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), rb.b.timeout)
	defer cancel()
	rb.send(ctx, batch)
}

// socketDeadline is its Context with a deadline of at (or the Context's
// own, if earlier) that no timer enforces: its Done channel is the
// Context's. It is for calls whose every wait is bounded by that deadline
// anyway: the Redis client, with ContextTimeoutEnabled, sets the
// deadline on the socket for each write and read, the dialer connects
// within it, and the pool's wait has its own timeout, so a round trip on
// a dead or paused Redis ends at the deadline, connection set-up
// included. That holds for go-redis v9.23, whose waits each have a timer
// or a socket deadline of their own (TestRedisUnresponsive guards it); a
// context derived from this one with a later deadline would never fire.
//
// context.WithTimeout would arm a timer per request instead, which on an
// idle machine also wakes the network poller, every time: on the README's
// VM, one pipelined decision took 1.29-1.35x a bare SET NX round trip with
// a context.WithTimeout around it and 1.17-1.21x without, in one run.
type socketDeadline struct {
	context.Context
	at time.Time
}

func (c socketDeadline) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.at) {
		return d, true
	}
	return c.at, true
}

// takeQueued appends to batch the operations queued, up to
// redisBatchMax in all, without waiting.
func (rb *redisBatch) takeQueued(batch []*redisOp) []*redisOp {
	for len(batch) < redisBatchMax {
		select {
		case op := <-rb.ops:
			batch = append(batch, op)
		default:
			return batch
		}
	}
	return batch
}

// send runs one batch as one pipeline, bounded by ctx and the client's
// timeouts, and hands each operation its outcome. An operation whose
// request has given up is left out (nothing is claimed or taken for it)
// and gets its context's error.
func (rb *redisBatch) send(ctx context.Context, batch []*redisOp) {
	start := time.Now()
	if len(batch) == 1 && (batch[0].claimKey == "") != (batch[0].bucketKey == "") {
		rb.sendOne(ctx, batch[0], start)
		return
	}
	p := rb.b.client.Pipeline()
	type pending struct {
		op      *redisOp
		claimed func() error
		decided func() (ratelimit.Decision, error)
		capped  func() (ratelimit.Capped, error)
	}
	sent := make([]pending, 0, len(batch))
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.deliver(redisResult{claimErr: err, limitErr: err})
			continue
		}
		pd := pending{op: op}
		if op.claimKey != "" {
			pd.claimed = rb.b.replay.ClaimIn(ctx, p, op.claimKey, op.ttl)
		}
		switch {
		case op.capKey != "":
			pd.capped = rb.b.limits.AllowCappedIn(ctx, p, op.bucketKey, op.limit, op.capKey, op.capLimit)
		case op.bucketKey != "":
			pd.decided = rb.b.limits.AllowNIn(ctx, p, op.bucketKey, op.limit, op.n)
		}
		sent = append(sent, pd)
	}
	if len(sent) == 0 {
		return
	}
	p.Exec(ctx) // each command carries its own outcome, read below
	var errs []error
	results := make([]redisResult, len(sent))
	for i, pd := range sent {
		r := &results[i]
		if pd.claimed != nil {
			r.claimErr = pd.claimed()
			errs = append(errs, failure(r.claimErr))
		}
		switch {
		case pd.capped != nil:
			r.capped, r.limitErr = pd.capped()
			errs = append(errs, r.limitErr)
		case pd.decided != nil:
			r.decision, r.limitErr = pd.decided()
			errs = append(errs, r.limitErr)
		}
	}
	// Counted before anyone hears the outcome, so that /metrics read
	// after an answer counts the round trip behind it.
	rb.b.metrics.observeRedis(opBatch(sent[0].claimed != nil, sent[0].op.bucketKey != ""), time.Since(start), errors.Join(errs...))
	rb.b.metrics.redisBatch.Observe(float64(len(sent)))
	for i, pd := range sent {
		pd.op.deliver(results[i])
	}
}

// opBatch labels a batch by its first operation's kind.
func opBatch(claim, decide bool) redisCall {
	switch {
	case claim && decide:
		return opClaimDecision
	case claim:
		return opClaim
	default:
		return opDecision
	}
}

// sendOne sends an operation of one command, a claim or a decision, as
// that command alone: a pipeline of one costs more (in eight interleaved
// runs of BenchmarkRedisRoundTrip, a claim took a median 1.030x a bare SET
// NX round trip against 1.064x, and a decision 1.235x against 1.267x).
func (rb *redisBatch) sendOne(ctx context.Context, op *redisOp, start time.Time) {
	if err := op.ctx.Err(); err != nil {
		op.deliver(redisResult{claimErr: err, limitErr: err})
		return
	}
	var r redisResult
	var err error
	switch {
	case op.claimKey != "":
		r.claimErr = rb.b.replay.Claim(ctx, op.claimKey, op.ttl)
		err = failure(r.claimErr)
	case op.capKey != "":
		r.capped, r.limitErr = rb.b.limits.AllowCapped(ctx, op.bucketKey, op.limit, op.capKey, op.capLimit)
		err = r.limitErr
	default:
		r.decision, r.limitErr = rb.b.limits.AllowN(ctx, op.bucketKey, op.limit, op.n)
		err = r.limitErr
	}
	rb.b.metrics.observeRedis(opBatch(op.claimKey != "", op.bucketKey != ""), time.Since(start), err)
	rb.b.metrics.redisBatch.Observe(1)
	op.deliver(r)
}
