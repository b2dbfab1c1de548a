package main

import (
	"net/http"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pimguard/pimguard/internal/prommetrics"
)

// metrics is the example's OpenTelemetry meter provider, exported in the
// Prometheus text format at GET /metrics (internal/prommetrics, shared with
// cmd/pimguard).
type metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

func newMetrics() (*metrics, error) {
	m, err := prommetrics.New()
	if err != nil {
		return nil, err
	}
	return &metrics{provider: m.Provider, handler: m.Handler}, nil
}
