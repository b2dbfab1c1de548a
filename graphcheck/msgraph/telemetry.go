package msgraph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pimguard/pimguard/graphcheck"
)

// instrumentationName is the scope of the Source's meter and tracer.
const instrumentationName = "github.com/pimguard/pimguard/graphcheck/msgraph"

// Span names.
const (
	spanLookup    = "pimguard.graph.lookup"
	spanPreflight = "pimguard.graph.preflight"
	spanUser      = "pimguard.graph.user"
)

// Error classes of failed lookups, preflight checks and round trips: the
// class attribute of pimguard.graph.errors, error.type elsewhere. The set
// is fixed; see errorClass.
const (
	classNotFound         = "not_found"         // graphcheck.ErrPrincipalNotFound
	classLicence          = "licence"           // graphcheck.ErrLicenseRequired
	classPermission       = "permission"        // graphcheck.ErrPermissionDenied
	classInvalidPrincipal = "invalid_principal" // graphcheck.ErrInvalidPrincipal: nothing was sent
	classThrottled        = "throttled"         // a 429 that retries did not get past, or a tenant pause beyond the deadline
	classTimeout          = "timeout"           // a deadline: Config.Timeout or the caller's
	classCanceled         = "canceled"          // the caller's context was canceled
	classUnavailable      = "unavailable"       // any other graphcheck.ErrUnavailable
)

// errorClass maps an error of this package's classifier (classifyStatus,
// classifyErr) to its class, "" for nil. Errors wrapping no sentinel are
// "unavailable", as they are for a Guard.
func errorClass(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, graphcheck.ErrPrincipalNotFound):
		return classNotFound
	case errors.Is(err, graphcheck.ErrLicenseRequired):
		return classLicence
	case errors.Is(err, graphcheck.ErrPermissionDenied):
		return classPermission
	case errors.Is(err, graphcheck.ErrInvalidPrincipal):
		return classInvalidPrincipal
	case errors.Is(err, errThrottled):
		return classThrottled
	case errors.Is(err, context.DeadlineExceeded):
		return classTimeout
	case errors.Is(err, context.Canceled):
		return classCanceled
	}
	return classUnavailable
}

// durationBounds are the histogram buckets of
// pimguard.graph.request.duration, in seconds (OpenTelemetry's advice for
// http.client.request.duration).
var durationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// telemetry is a Source's instruments and tracer.
type telemetry struct {
	meter     metric.Meter // on Config.MeterProvider, or the global provider
	tracer    trace.Tracer
	duration  metric.Float64Histogram
	errors    metric.Int64Counter
	throttled metric.Int64Counter
}

// newTelemetry creates the instruments on mp and the tracer on tp; nil
// means the global provider.
func newTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) (*telemetry, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	m := mp.Meter(instrumentationName)
	t := &telemetry{meter: m, tracer: tp.Tracer(instrumentationName)}
	var err error
	if t.duration, err = m.Float64Histogram("pimguard.graph.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP round trips to Microsoft Graph (each POST /$batch), by status code and, for failures, error class."),
		metric.WithExplicitBucketBoundaries(durationBounds...)); err != nil {
		return nil, instrumentError("pimguard.graph.request.duration", err)
	}
	if t.errors, err = m.Int64Counter("pimguard.graph.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Failed lookups and failed preflight checks, by error class.")); err != nil {
		return nil, instrumentError("pimguard.graph.errors", err)
	}
	if t.throttled, err = m.Int64Counter("pimguard.graph.throttled", metric.WithUnit("{response}"),
		metric.WithDescription("429 answers from Graph, of a whole $batch or of a sub-request inside one, by request path template.")); err != nil {
		return nil, instrumentError("pimguard.graph.throttled", err)
	}
	return t, nil
}

func instrumentError(name string, err error) error {
	return fmt.Errorf("%w: MeterProvider: creating instrument %s: %v", ErrInvalidConfig, name, err)
}

// op is one traced Lookup or Preflight: its span and the round trips made
// on its behalf.
type op struct {
	tel   *telemetry
	ctx   context.Context // carries span
	span  trace.Span
	trips atomic.Int64 // shared group-role fetches it started count too
}

type opKey struct{}

// lookupAttrs are the attributes of a Lookup's span: never an object ID or
// a token (nor the group IDs of CheckGroups: only how many).
func lookupAttrs(p graphcheck.Principal) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.Bool("pimguard.service_principal", p.ServicePrincipal), needAttr(p.Need)}
	if n := p.CheckGroups.Len(); n > 0 {
		attrs = append(attrs, attribute.Int("pimguard.check_groups", n))
	}
	if graphcheck.IsGUID(p.TenantID) {
		attrs = append(attrs, attribute.String("pimguard.tenant_id", strings.ToLower(p.TenantID)))
	}
	return attrs
}

// needAttr lists the facts asked for: "account", "risk" (and, for a
// preflight, "groups", "administrative_units").
func needAttr(n graphcheck.Need) attribute.KeyValue {
	names := []string{}
	for _, f := range []struct {
		bit  graphcheck.Need
		name string
	}{{graphcheck.NeedAccount, "account"}, {graphcheck.NeedRisk, "risk"},
		{graphcheck.NeedGroupMembership, "groups"}, {graphcheck.NeedAdministrativeUnits, "administrative_units"}} {
		if n.Has(f.bit) {
			names = append(names, f.name)
			n &^= f.bit
		}
	}
	if n != 0 {
		names = append(names, fmt.Sprintf("Need(%#x)", uint8(n)))
	}
	return attribute.StringSlice("pimguard.need", names)
}

// start begins the span of a Lookup or Preflight; ctx is the context to
// make its requests with.
func (t *telemetry) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, *op) {
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	o := &op{tel: t, span: span}
	o.ctx = context.WithValue(ctx, opKey{}, o)
	return o.ctx, o
}

// end counts each failure in errs by class and ends the span: outcome "ok"
// or the first failure's class, with status Error naming the classes.
func (o *op) end(errs ...error) {
	var classes []string
	for _, err := range errs {
		if err == nil {
			continue
		}
		c := errorClass(err)
		o.tel.errors.Add(o.ctx, 1, metric.WithAttributes(attribute.String("class", c)))
		if !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	outcome := "ok"
	if len(classes) > 0 {
		outcome = classes[0]
		o.span.SetAttributes(attribute.String("error.type", outcome))
		o.span.SetStatus(codes.Error, strings.Join(classes, ","))
	}
	o.span.SetAttributes(attribute.Int64("pimguard.graph.round_trips", o.trips.Load()), attribute.String("pimguard.outcome", outcome))
	o.span.End()
}

// roundTrip records one POST /$batch: its duration since start, the HTTP
// status (0 without an answer) and, when the batch as a whole failed, the
// failure's class; a 429 also counts as throttled.
func (t *telemetry) roundTrip(ctx context.Context, start time.Time, status int, err error) {
	if o, _ := ctx.Value(opKey{}).(*op); o != nil {
		o.trips.Add(1)
	}
	attrs := []attribute.KeyValue{attribute.Int("http.response.status_code", status)}
	if err != nil {
		attrs = append(attrs, attribute.String("error.type", errorClass(err)))
	}
	t.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs...))
	t.throttledAnswer(ctx, status, "/$batch")
}

// throttledAnswer counts a 429 answer to a request to path, an endpoint's
// path template.
func (t *telemetry) throttledAnswer(ctx context.Context, status int, path string) {
	if status == http.StatusTooManyRequests {
		t.throttled.Add(ctx, 1, metric.WithAttributes(attribute.String("request", path)))
	}
}

// batchErr is the failure of a whole $batch as sendBatch returns it: the
// error of a batch to be retried, or the one set on every answer; nil when
// the batch was answered.
func batchErr(answers []answer, retry []throttle) error {
	switch {
	case len(retry) > 0:
		return retry[0].err
	case len(answers) > 0:
		return answers[0].err
	}
	return nil
}
