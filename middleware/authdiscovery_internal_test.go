package middleware

import (
	"testing"
	"time"
)

// TestRetryDelay: the delay after a failed round doubles from
// DiscoveryRetryMin up to DiscoveryRetryMax, lies in the upper half of that
// backoff (equal jitter), never exceeds the maximum, and does not overflow
// however many rounds failed.
func TestRetryDelay(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
	}{
		{"defaults", DefaultDiscoveryRetryMin, DefaultDiscoveryRetryMax},
		{"min equals max", time.Second, time.Second},
		{"nanoseconds", time.Nanosecond, 3 * time.Nanosecond},
		{"huge max", time.Second, 1 << 62},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Authenticator{cfg: AuthenticatorConfig{DiscoveryRetryMin: tt.min, DiscoveryRetryMax: tt.max}}
			jittered := false
			for round := range 100 {
				backoff := tt.min
				for range round {
					if backoff = 2 * backoff; backoff > tt.max || backoff <= 0 {
						backoff = tt.max // capped, or doubled past the int64 range
					}
				}
				first := a.retryDelay(round)
				for range 20 {
					d := a.retryDelay(round)
					if d < backoff-backoff/2 || d > backoff || d > tt.max {
						t.Fatalf("round %d: delay %v outside [%v, %v]", round, d, backoff-backoff/2, backoff)
					}
					jittered = jittered || d != first
				}
			}
			if !jittered && tt.max > time.Microsecond {
				t.Error("the delays are not jittered")
			}
		})
	}
}
