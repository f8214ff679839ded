package attest

import (
	"sync"

	"github.com/nestattest/nestattest/walk"
)

// forEach calls fn for 0..n-1 on at most jobs goroutines at once
// (walk.DefaultJobs when jobs is zero).
func forEach(n, jobs int, fn func(i int)) {
	if jobs <= 0 {
		jobs = walk.DefaultJobs
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(jobs, max(n, 1)) {
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
