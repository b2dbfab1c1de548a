package msgraph_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
)

// telemetryEnv is an env whose Source reports to a manual metric reader
// and a span recorder.
func telemetryEnv(t *testing.T) (*stack, *sdkmetric.ManualReader, *tracetest.SpanRecorder) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) {
		c.MeterProvider, c.TracerProvider = mp, tp
	})
	return e, reader, spans
}

// points collects the reader's pimguard instruments: for each, a count per
// attribute set ("k=v,k=v"): a counter's value, a histogram's count.
func points(t *testing.T, r sdkmetric.Reader) map[string]map[string]uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := map[string]map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !strings.HasPrefix(m.Name, "pimguard.") {
				continue
			}
			if m.Description == "" || m.Unit == "" {
				t.Errorf("%s: description %q, unit %q", m.Name, m.Description, m.Unit)
			}
			pts := map[string]uint64{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					pts[dp.Attributes.Encoded(attribute.DefaultEncoder())] = uint64(dp.Value)
				}
			case metricdata.Histogram[float64]:
				if m.Unit != "s" {
					t.Errorf("%s in %q, want s", m.Name, m.Unit)
				}
				for _, dp := range d.DataPoints {
					pts[dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Count
					if min, ok := dp.Min.Value(); !ok || min < 0 {
						t.Errorf("%s: min %v", m.Name, min)
					}
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
			out[m.Name] = pts
		}
	}
	return out
}

// spanSummary is what a test checks of one span.
type spanSummary struct {
	name   string
	status codes.Code
	desc   string
	attrs  map[string]string
}

func (s spanSummary) String() string {
	keys := make([]string, 0, len(s.attrs))
	for k := range s.attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%v %q]", s.name, s.status, s.desc)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, s.attrs[k])
	}
	return b.String()
}

func TestTelemetry(t *testing.T) {
	e, mr, spans := telemetryEnv(t)
	must(t, e.srv.AssignRole(alice, reader, "/", time.Time{}, time.Time{}))
	ctx := context.Background()

	// lookup spans' attributes, with those of the outcome added.
	tenant := map[string]string{"pimguard.tenant_id": graphtest.TenantID, "pimguard.service_principal": "false", "pimguard.need": "[]"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	steps := []struct {
		name string
		run  func() error
		want error // sentinel, nil for success
		span spanSummary
	}{
		{name: "success, with account and risk",
			run: func() error {
				p := user(alice)
				p.Need = graphcheck.NeedAccount | graphcheck.NeedRisk
				_, err := e.src.Lookup(ctx, p)
				return err
			},
			span: spanSummary{name: "pimguard.graph.lookup", status: codes.Unset,
				attrs: with(tenant, "pimguard.need", `["account","risk"]`, "pimguard.graph.round_trips", "1", "pimguard.outcome", "ok")}},
		{name: "throttled sub-request, retried",
			run: func() error {
				f := graphtest.ThrottledFault("1")
				f.Times = 1
				e.srv.InjectGraphFault(inside("/roleManagement/"), f)
				_, err := e.src.Lookup(ctx, user(alice))
				e.clock.Advance(time.Second) // the tenant's pause (its Retry-After) is over
				return err
			},
			span: spanSummary{name: "pimguard.graph.lookup", status: codes.Unset,
				attrs: with(tenant, "pimguard.graph.round_trips", "2", "pimguard.outcome", "ok")}},
		{name: "permission denied",
			run: func() error {
				remove := e.srv.InjectGraphFault(inside("/identityGovernance/"), graphtest.DeniedFault())
				defer remove()
				_, err := e.src.Lookup(ctx, user(alice))
				return err
			},
			want: graphcheck.ErrPermissionDenied,
			span: spanSummary{name: "pimguard.graph.lookup", status: codes.Error, desc: "permission",
				attrs: with(tenant, "pimguard.graph.round_trips", "1", "pimguard.outcome", "permission", "error.type", "permission")}},
		{name: "$batch throttled until retries run out",
			run: func() error {
				remove := e.srv.InjectGraphFault(batchItself, graphtest.ThrottledFault("1"))
				defer remove()
				_, err := e.src.Lookup(ctx, user(alice))
				return err
			},
			want: graphcheck.ErrUnavailable,
			span: spanSummary{name: "pimguard.graph.lookup", status: codes.Error, desc: "throttled",
				attrs: with(tenant, "pimguard.graph.round_trips", "4", "pimguard.outcome", "throttled", "error.type", "throttled")}},
		{name: "preflight without a PIM licence",
			run: func() error {
				remove := e.srv.InjectGraphFault(graphtest.MatchPath("/roleManagement/"), graphtest.LicenseRequiredFault())
				defer remove()
				return e.src.Preflight(ctx, 0)
			},
			want: graphcheck.ErrLicenseRequired,
			span: spanSummary{name: "pimguard.graph.preflight", status: codes.Error, desc: "licence",
				attrs: map[string]string{"pimguard.need": "[]", "pimguard.graph.round_trips": "3", "pimguard.outcome": "licence", "error.type": "licence"}}},
		{name: "invalid principal, nothing sent",
			run: func() error {
				_, err := e.src.Lookup(ctx, user("not-a-guid"))
				return err
			},
			want: graphcheck.ErrInvalidPrincipal,
			span: spanSummary{name: "pimguard.graph.lookup", status: codes.Error, desc: "invalid_principal",
				attrs: with(tenant, "pimguard.graph.round_trips", "0", "pimguard.outcome", "invalid_principal", "error.type", "invalid_principal")}},
	}
	for _, s := range steps {
		err := s.run()
		if (s.want == nil) != (err == nil) || !errors.Is(err, s.want) {
			t.Fatalf("%s: error %v, want %v", s.name, err, s.want)
		}
	}

	ended := spans.Ended()
	if len(ended) != len(steps) {
		t.Fatalf("%d spans ended, want %d", len(ended), len(steps))
	}
	for i, sp := range ended {
		got := spanSummary{name: sp.Name(), status: sp.Status().Code, desc: sp.Status().Description, attrs: map[string]string{}}
		for _, kv := range sp.Attributes() {
			v := kv.Value.Emit()
			got.attrs[string(kv.Key)] = v
			if strings.Contains(v, alice) || strings.Contains(v, fakeToken) {
				t.Errorf("span %s attribute %s = %q carries an object ID or the token", sp.Name(), kv.Key, v)
			}
		}
		if got.String() != steps[i].span.String() {
			t.Errorf("%s: span\n  %s\nwant\n  %s", steps[i].name, got, steps[i].span)
		}
		if sp.Parent().IsValid() {
			t.Errorf("%s: span has a parent", steps[i].name)
		}
	}

	want := map[string]map[string]uint64{
		// 1 + 2 + 1 answered $batches, then 4 throttled ones, then 3 preflight probes.
		"pimguard.graph.request.duration": {
			"http.response.status_code=200":                      7,
			"error.type=throttled,http.response.status_code=429": 4,
		},
		"pimguard.graph.errors": {"class=permission": 1, "class=throttled": 1, "class=licence": 1, "class=invalid_principal": 1},
		"pimguard.graph.throttled": {
			"request=/roleManagement/directory/roleAssignmentScheduleInstances": 1,
			"request=/$batch": 4,
		},
	}
	got := points(t, mr)
	for name, w := range want {
		if fmt.Sprint(got[name]) != fmt.Sprint(w) {
			t.Errorf("%s = %v, want %v", name, got[name], w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected instrument %s", name)
		}
	}
	if w := e.sleep.slept(); len(w) != 4 || w[0] != time.Second {
		t.Errorf("waits %v, want 4 of 1s (one sub-request retry, three $batch retries)", w)
	}
}

func TestTelemetryErrorClasses(t *testing.T) {
	tests := []struct {
		name  string
		match graphtest.GraphMatch
		fault graphtest.Fault
		cfg   func(*msgraph.Config)
		p     graphcheck.Principal
		class string
	}{
		{name: "principal deleted", p: user(nobody), class: "not_found"},
		{name: "500", match: batchItself, fault: graphtest.Fault{Status: 500}, p: user(alice), class: "unavailable"},
		{name: "429 inside, retries disabled", match: inside("/users/"), fault: graphtest.ThrottledFault("1"),
			cfg: func(c *msgraph.Config) { c.MaxRetries = msgraph.NoRetries }, p: user(alice), class: "throttled"},
		{name: "Graph hangs past Timeout", match: batchItself, fault: graphtest.Fault{Kind: graphtest.FaultHang},
			cfg: func(c *msgraph.Config) { c.Timeout = 200 * time.Millisecond }, p: user(alice), class: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
			e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) {
				c.MeterProvider = mp
				if tt.cfg != nil {
					tt.cfg(c)
				}
			})
			if tt.match != (graphtest.GraphMatch{}) {
				e.srv.InjectGraphFault(tt.match, tt.fault)
			}
			if _, err := e.src.Lookup(context.Background(), tt.p); err == nil {
				t.Fatal("Lookup succeeded")
			}
			if got, want := fmt.Sprint(points(t, reader)["pimguard.graph.errors"]), fmt.Sprint(map[string]uint64{"class=" + tt.class: 1}); got != want {
				t.Errorf("pimguard.graph.errors = %s, want %s", got, want)
			}
		})
	}
}

func TestTelemetryCanceled(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	e := newEnv(t, graphtest.Options{}, func(_ *stack, c *msgraph.Config) { c.MeterProvider = mp })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.src.Lookup(ctx, user(alice)); err == nil {
		t.Fatal("Lookup succeeded with a canceled context")
	}
	if got, want := fmt.Sprint(points(t, reader)["pimguard.graph.errors"]), fmt.Sprint(map[string]uint64{"class=canceled": 1}); got != want {
		t.Errorf("pimguard.graph.errors = %s, want %s", got, want)
	}
}
