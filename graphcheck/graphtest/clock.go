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
// when the test says so — or, for a clock from [NewLiveClock], also with the
// wall clock. A Clock is safe for concurrent use.
type Clock struct {
	mu     sync.RWMutex
	now    time.Time     // fixed clocks
	live   bool          // live clocks read time.Now() + offset
	offset time.Duration // live clocks
}

// NewClock returns a Clock that reads t until it is advanced or set.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// NewLiveClock returns a Clock that follows the wall clock, shifted by what
// [Clock.Advance] and [Clock.Set] add. Demos use it: the service runs in real
// time, and a scripted walkthrough can still jump ahead to an expiry.
func NewLiveClock() *Clock { return &Clock{live: true} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.live {
		return time.Now().Add(c.offset)
	}
	return c.now
}

// Advance moves the clock forward by d (backward when d is negative) and
// returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		c.offset += d
		return time.Now().Add(c.offset)
	}
	c.now = c.now.Add(d)
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		c.offset = time.Until(t)
		return
	}
	c.now = t
}
