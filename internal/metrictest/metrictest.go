// Package metrictest reads what pimguard's instruments recorded, for tests:
// one collector for every package that reports metrics.
package metrictest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Instrument is one instrument's collected data: its kind, unit, and value
// per attribute set (attribute.DefaultEncoder's "k=v,k=v", "" for none).
type Instrument struct {
	Kind   string // "counter" (monotonic cumulative sum), "gauge" or "histogram" (its points are counts)
	Unit   string
	Points map[string]int64
}

// Collect reads every pimguard.* instrument of r. It fails t on an
// instrument without a description or of a kind pimguard does not use.
func Collect(t testing.TB, r sdkmetric.Reader) map[string]Instrument {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := map[string]Instrument{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !strings.HasPrefix(m.Name, "pimguard.") {
				continue
			}
			if m.Description == "" {
				t.Errorf("%s has no description", m.Name)
			}
			c := Instrument{Unit: m.Unit, Points: map[string]int64{}}
			var dps []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: sum monotonic=%v temporality=%v", m.Name, d.IsMonotonic, d.Temporality)
				}
				c.Kind, dps = "counter", d.DataPoints
			case metricdata.Gauge[int64]:
				c.Kind, dps = "gauge", d.DataPoints
			case metricdata.Histogram[float64]:
				c.Kind = "histogram"
				for _, dp := range d.DataPoints {
					dps = append(dps, metricdata.DataPoint[int64]{Attributes: dp.Attributes, Value: int64(dp.Count)})
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
			for _, dp := range dps {
				c.Points[dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Value
			}
			out[m.Name] = c
		}
	}
	return out
}

// Total is the sum of an instrument's points, 0 when it was not collected.
func (i Instrument) Total() int64 {
	var n int64
	for _, v := range i.Points {
		n += v
	}
	return n
}

// Expect collects r and fails t unless it holds exactly the instruments of
// want, each with its kind, unit and points.
func Expect(t testing.TB, r sdkmetric.Reader, want map[string]Instrument) {
	t.Helper()
	got := Collect(t, r)
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s not collected", name)
			continue
		}
		if g.Kind != w.Kind || g.Unit != w.Unit {
			t.Errorf("%s: %s in %q, want %s in %q", name, g.Kind, g.Unit, w.Kind, w.Unit)
		}
		if fmt.Sprint(g.Points) != fmt.Sprint(w.Points) {
			t.Errorf("%s = %v, want %v", name, g.Points, w.Points)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected instrument %s", name)
		}
	}
}
