package msgraph

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// MaxPause caps the pause of a tenant's requests that a 429's Retry-After
// sets (see [Config.TenantLimits]): a longer Retry-After, such as a
// broken header or an HTTP date years ahead, pauses the tenant for
// MaxPause, and the next 429 after it pauses it again. The Lookup that
// received the 429 still compares the whole Retry-After with its deadline.
const MaxPause = time.Minute

// pause records that Graph answered 429 with a Retry-After of d for the
// tenant: in this process, on Config.Now, so that its other lookups of the
// tenant wait too, and through Config.TenantLimits for every process that
// shares them. A failure of TenantLimits leaves the pause in this process
// only. A shorter pause never cuts a longer one short.
func (s *Source) pause(ctx context.Context, tenant string, d time.Duration) {
	d = min(d, MaxPause)
	end := s.cfg.Now().Add(d)
	s.mu.Lock()
	if end.After(s.pauses[tenant]) {
		s.pauses[tenant] = end
	}
	s.mu.Unlock()
	if tl := s.cfg.TenantLimits; tl != nil {
		if err := tl.Pause(ctx, tenant, d); err != nil {
			s.sharedFailed(ctx, "the pause holds in this process only", err)
		}
	}
}

// notePause records the longest pause that the 429s among t asked for,
// and reports whether there was one. Nothing is recorded for an unknown
// tenant ("").
func (s *Source) notePause(ctx context.Context, tenant string, t []throttle) bool {
	var d time.Duration
	for _, x := range t {
		if x.pause {
			d = max(d, x.delay)
		}
	}
	if tenant == "" || d <= 0 {
		return false
	}
	s.pause(ctx, tenant, d)
	return true
}

// pausedUntil returns when the tenant's pause ends, on Config.Now (zero
// or before now when there is none): the later of this process's pause
// and, when Config.TenantLimits is set and answers, the shared one.
// shared reports that the shared pause is the later.
func (s *Source) pausedUntil(ctx context.Context, tenant string, now time.Time) (end time.Time, shared bool) {
	s.mu.Lock()
	end = s.pauses[tenant]
	if !end.IsZero() && !end.After(now) {
		delete(s.pauses, tenant) // over: keep the map to the tenants paused now
	}
	s.mu.Unlock()
	if tl := s.cfg.TenantLimits; tl != nil {
		d, err := tl.Paused(ctx, tenant)
		switch {
		case err != nil:
			s.sharedFailed(ctx, "only this process's pause applies", err)
		case d > 0 && now.Add(d).After(end):
			end, shared = now.Add(d), true
		}
	}
	return end, shared
}

// awaitPause waits, through Config.Sleep, until the tenant's pause is
// over, or fails at once when that wait does not fit before ctx's
// deadline. Only the part of the pause beyond what the caller's Lookup
// has already waited (pc) is waited for. An unknown tenant ("") never
// waits.
func (s *Source) awaitPause(ctx context.Context, tenant string, pc *pace) error {
	if tenant == "" {
		return nil
	}
	now := s.cfg.Now()
	end, shared := s.pausedUntil(ctx, tenant, now)
	d := end.Sub(pc.since(now))
	if d <= 0 {
		return nil
	}
	if !fits(ctx, d) {
		// Throttling that outlasts the deadline: an outage (see
		// classifyStatus).
		return fmt.Errorf("%w: %w: %w: Graph paused the tenant's requests (a 429's Retry-After) for another %v, which does not fit before the deadline",
			graphcheck.ErrUnavailable, graphcheck.ErrOutage, errThrottled, d)
	}
	s.cfg.Logger.WarnContext(ctx, "msgraph: Graph throttled the tenant; waiting for its pause",
		"tenant_id", tenant, "delay", d, "shared", shared)
	if err := s.cfg.Sleep(ctx, d); err != nil {
		return fmt.Errorf("interrupted while waiting for the tenant's throttling pause: %w", classifyErr(epBatch, err))
	}
	pc.waited(now, d)
	return nil
}

// pace is how long one Lookup has waited for Graph so far: the end, on
// Config.Now, of its latest retry or pause wait, each counted from the
// later of the clock and the previous end. A pause that ends by then (the
// one the Lookup's own 429 set, which its retry wait covered) is not
// waited for a second time, even when Sleep returns without the clock
// moving (a test's stub) or the clock lags. Lookup carries its pace in
// its context, so that the group-roles fetch it starts shares it.
type pace struct {
	mu  sync.Mutex
	end time.Time
}

type paceKey struct{}

// withPace returns ctx carrying a new pace.
func withPace(ctx context.Context) context.Context {
	return context.WithValue(ctx, paceKey{}, &pace{})
}

// paceOf returns ctx's pace, or a new one for a fetch outside a Lookup
// (Preflight).
func paceOf(ctx context.Context) *pace {
	if pc, ok := ctx.Value(paceKey{}).(*pace); ok {
		return pc
	}
	return &pace{}
}

// since returns the instant from which a wait starting now counts: now,
// or the end of the waits already made if that is later.
func (pc *pace) since(now time.Time) time.Time {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return later(now, pc.end)
}

// waited records a wait of d that started now.
func (pc *pace) waited(now time.Time, d time.Duration) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.end = later(now, pc.end).Add(d)
}

// sharedFailed logs, at debug level, a failed call to Config.TenantLimits
// and what the Source does instead. Implementations count and report
// their own outages; this line is for tracing one request.
func (s *Source) sharedFailed(ctx context.Context, fallback string, err error) {
	s.cfg.Logger.DebugContext(ctx, "msgraph: shared tenant limits failed; "+fallback, "error", err.Error())
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
