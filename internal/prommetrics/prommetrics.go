// Package prommetrics is the OpenTelemetry meter provider of pimguard's
// programs (the example and cmd/pimguard), exported in the Prometheus text
// format. The library itself only uses the OpenTelemetry API (a no-op until
// a provider is installed); choosing an exporter is a program's business.
package prommetrics

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metrics is a meter provider and the handler that serves what it records
// (GET /metrics).
type Metrics struct {
	Provider *sdkmetric.MeterProvider
	Handler  http.Handler
}

// New builds a private Prometheus registry (no global state, so tests can
// build several programs in one process) with the Go runtime's and the
// process's collectors next to pimguard's instruments.
func New() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &Metrics{
		Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
		Handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
	}, nil
}
