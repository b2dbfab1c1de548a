package graphtest

import (
	"sync"
	"time"
)

// Clock is a settable clock shared by the fake tenant and the code under test.
//
// Hand its [Clock.Now] method to every Now field (middleware, cache, Graph
// source) so that tokens, PIM schedules and cache expiry all move together when
// a test calls [Clock.Advance]. Nothing in graphtest sleeps: time passes only
// when the test says so. A Clock is safe for concurrent use.
type Clock struct {
	mu  sync.RWMutex
	now time.Time
}

// NewClock returns a Clock that reads t until it is advanced or set.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.now
}

// Advance moves the clock forward by d (backward when d is negative) and
// returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
