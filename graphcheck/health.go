package graphcheck

import "time"

// HealthCheck is one item of a readiness report: whether one thing a
// component depends on (a tenant's signing keys, a tenant's Graph, the
// fleet's Redis) is in a state to serve requests.
type HealthCheck struct {
	// Name says what was checked, e.g. "keys/<tenant>", "graph/<tenant>",
	// "shared".
	Name string `json:"name"`
	// Ready is false when requests that depend on it fail now.
	Ready bool `json:"ready"`
	// Degraded marks a ready item working below its best (e.g. fleet mode
	// working locally while Redis is unreachable): worth an alert, not a
	// reason to take the replica out of rotation.
	Degraded bool `json:"degraded,omitempty"`
	// Detail explains the state in a sentence, for operators. It never
	// holds a token or a secret.
	Detail string `json:"detail,omitempty"`
	// Since is when the item entered its current state, or when what it
	// reports was last refreshed (zero when unknown).
	Since time.Time `json:"since,omitzero"`
}

// HealthReporter is implemented by components that can report their
// readiness: middleware's Authenticator and Guard, a Source wrapped in a
// circuit breaker (graphcheck/breaker), redisstore's Store. A Guard
// includes the reports of its Source and shared tier when they implement
// it. Health must be cheap (no network call) and safe for concurrent use.
type HealthReporter interface {
	Health() []HealthCheck
}
