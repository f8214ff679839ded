// Package recent keeps the values most recently computed for a few keys:
// what a tree statement costs to prepare or to read is paid once for the
// nodes that share it, and a run of single-node statements holds no more
// than a few.
package recent

import "sync"

// Cache holds at most Size values, dropping the oldest first. It is safe
// for concurrent use; the zero value holds nothing.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	size  int
	m     map[K]V
	order []K
}

// New returns a cache of at most size values.
func New[K comparable, V any](size int) *Cache[K, V] {
	return &Cache[K, V]{size: size, m: make(map[K]V, size)}
}

// Get returns the value kept for k.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

// Add keeps v for k, dropping the oldest value when full.
func (c *Cache[K, V]) Add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size <= 0 {
		return
	}
	if _, ok := c.m[k]; !ok {
		if len(c.order) == c.size {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, k)
	}
	c.m[k] = v
}

// Do returns the value kept for k, else computes it with fn and keeps it
// when fn succeeds. Concurrent calls for a missing k may each compute it.
func (c *Cache[K, V]) Do(k K, fn func() (V, error)) (V, error) {
	if v, ok := c.Get(k); ok {
		return v, nil
	}
	v, err := fn()
	if err == nil {
		c.Add(k, v)
	}
	return v, err
}
