// Package backoff is the one wait between attempts that every retry and
// poll of nestattest uses: the registry client's retries, and propagate
// waiting for the builder's provenance. A wait doubles from the first up
// to a cap, and ends early when the context does.
package backoff

import (
	"context"
	"time"
)

// Backoff yields the waits between attempts: First, then each twice the
// one before, never more than Max (no cap when Max is zero). The zero
// value waits not at all; a Backoff is not safe for concurrent use.
type Backoff struct {
	First, Max time.Duration

	next time.Duration
	used bool
}

// Next returns the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	if !b.used {
		b.next, b.used = b.First, true
	}
	d := b.next
	b.next *= 2
	if b.Max > 0 && (b.next > b.Max || b.next < d) {
		b.next = b.Max
	}
	return d
}

// Wait sleeps for the next wait, or until ctx is done.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep waits d, or until ctx is done: then it returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
