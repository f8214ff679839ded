// Package pool runs work on a bounded number of goroutines. It bounds
// goroutines, not requests: every request of a run passes the one per-host
// limit of its registry.Client.
package pool

import "sync"

// ForEach calls fn for 0..n-1 on at most jobs goroutines at once (one when
// jobs is less than one) and returns when every call has returned.
func ForEach(n, jobs int, fn func(i int)) {
	jobs = min(max(jobs, 1), max(n, 1))
	next := make(chan int)
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
