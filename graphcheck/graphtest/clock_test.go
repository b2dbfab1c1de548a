package graphtest_test

import (
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck/graphtest"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	c := graphtest.NewClock(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now = %v", c.Now())
	}
	if got := c.Advance(time.Minute); !got.Equal(t0.Add(time.Minute)) || !c.Now().Equal(got) {
		t.Errorf("Advance = %v, Now = %v", got, c.Now())
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Errorf("after Set: %v", c.Now())
	}
}

func TestLiveClock(t *testing.T) {
	c := graphtest.NewLiveClock()
	if d := time.Since(c.Now()); d < -time.Second || d > time.Second {
		t.Fatalf("live clock is %v off the wall clock", d)
	}
	c.Advance(time.Hour)
	if d := time.Until(c.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("after Advance(1h) the clock is %v ahead, want about 1h", d)
	}
	target := time.Now().Add(-24 * time.Hour)
	c.Set(target)
	if d := c.Now().Sub(target); d < 0 || d > time.Second {
		t.Errorf("after Set the clock is %v past the target", d)
	}
}
