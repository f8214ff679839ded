package registry

import (
	"context"
	"sync/atomic"
)

type counterKey struct{}

// Counter counts the HTTP requests a Client makes under a context: every
// attempt, retries included; not the ping and token requests of a
// repository's first use, but a token renewed on the way.
type Counter struct{ n atomic.Int64 }

// Count returns how many requests were counted.
func (c *Counter) Count() int { return int(c.n.Load()) }

// WithCounter returns a context under which the requests a Client makes
// are counted by c, as well as by any counter of ctx.
func WithCounter(ctx context.Context, c *Counter) context.Context {
	return context.WithValue(ctx, counterKey{}, append(counters(ctx), c))
}

func counters(ctx context.Context) []*Counter {
	cs, _ := ctx.Value(counterKey{}).([]*Counter)
	return cs[:len(cs):len(cs)]
}

func count(ctx context.Context) {
	for _, c := range counters(ctx) {
		c.n.Add(1)
	}
}

func withoutCounters(ctx context.Context) context.Context {
	return context.WithValue(ctx, counterKey{}, []*Counter(nil))
}
