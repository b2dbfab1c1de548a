package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/graphcheck"
)

// Defaults applied by [New] to zero-valued [Config] fields.
const (
	DefaultPrefix        = "pimguard"
	DefaultTimeout       = 250 * time.Millisecond
	DefaultLeaseTTL      = 3 * time.Second
	DefaultProbeInterval = time.Second
	// MinKeySize is the shortest [Config.Key] accepted: 32 bytes, the
	// output size of SHA-256.
	MinKeySize = 32
)

// ErrUnavailable is wrapped by the errors of calls made while Redis is
// unreachable, and of calls that fail because of it.
var ErrUnavailable = errors.New("redisstore: Redis unavailable")

// Config configures a [Store]. Key and one of URL and Client are required.
type Config struct {
	// URL is the Redis server to use, parsed by go-redis's ParseURL:
	// redis://[user:password@]host:port/db, rediss:// for TLS (the system's
	// roots verify the server), with an ACL user and password in the
	// userinfo. Query parameters set the client's options (e.g.
	// ?dial_timeout=1s). Exactly one of URL and Client must be set.
	URL string

	// Client is a go-redis client built by the caller, for what a URL
	// cannot say: Sentinel (redis.NewFailoverClient), Cluster
	// (redis.NewClusterClient), client certificates, a custom TLS
	// configuration. Every key a Store writes for one cache entry, and its
	// lease, share a hash tag, so scripts work on a Cluster. The Store does
	// not close a Client it was given.
	Client redis.UniversalClient

	// Key authenticates every entry the fleet writes (HMAC-SHA-256): at
	// least [MinKeySize] random bytes, the same on every replica, kept as
	// secret as the Graph credentials, since whoever holds it and can write
	// to Redis can grant any role. Entries that do not verify are ignored
	// and counted (pimguard.shared.rejected), never served.
	Key []byte

	// PreviousKeys still verify entries but never sign them, for rotating
	// Key without a cold fleet: deploy the new Key with the old one here,
	// then drop it after the longest cache TTL.
	PreviousKeys [][]byte

	// Prefix namespaces every Redis key and channel (Prefix:v1:…). Default
	// [DefaultPrefix]. Deployments whose Guards are configured differently
	// (another Source, other account checks) should not share a prefix.
	Prefix string

	// Timeout bounds each Redis call; a call that takes longer counts as
	// Redis being unavailable. Default [DefaultTimeout]: Redis answers in
	// well under a millisecond on a LAN, and a lookup that waits longer
	// for Redis than for Graph has lost the point.
	Timeout time.Duration

	// LeaseTTL is how long a replica's claim to load a key lasts without
	// renewal. The replica loading renews it every LeaseTTL/3; if it dies,
	// the others load themselves after at most LeaseTTL. Default
	// [DefaultLeaseTTL].
	LeaseTTL time.Duration

	// ProbeInterval is how often a Store that lost Redis tries it again
	// (one PING); while Redis is unreachable the Store does not send
	// anything else on the request path. It also checks a healthy
	// connection that often. Default [DefaultProbeInterval].
	ProbeInterval time.Duration

	// Now is the clock of the caches using the Store, which decides how
	// long Redis keeps an entry. Default time.Now.
	Now func() time.Time

	// Logger receives one record per change of Redis's reachability, and
	// at most one a minute about rejected entries. Default slog.Default().
	Logger *slog.Logger

	// MeterProvider receives pimguard.shared.errors (by op),
	// pimguard.shared.rejected and pimguard.shared.connected (1 while
	// Redis is reachable, else 0). Default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Store is a fleet's shared tier on Redis: a [cache.Shared] for the state
// cache of middleware.Guard and a [graphcheck.TenantLimits] for
// graphcheck/msgraph. Create one with [New] and [Store.Close] it when done.
// A Store is safe for concurrent use.
type Store struct {
	cfg     Config
	client  redis.UniversalClient
	owned   bool // client made from URL, closed by Close
	keys    [][]byte
	limiter *redis_rate.Limiter

	epoch atomic.Uint64 // InvalidateAll generation, part of every entry key
	// unflushed is set when an invalidation could not reach Redis: the
	// entries it should have removed may still be there. Until a fleet-wide
	// InvalidateAll has replaced them, the Store stays local-only (it never
	// reads Redis while it is set), so that a purge is never undone by
	// Redis coming back.
	unflushed atomic.Bool
	up        atomic.Bool
	since     atomic.Int64 // UnixNano (Config.Now) of the last change of up, or of New
	stateMu   sync.Mutex   // serialises reachability transitions and their logs

	subMu sync.Mutex
	subs  map[int]func([]string)
	subID int

	rejectLog rate.Sometimes

	errors   metric.Int64Counter
	rejected metric.Int64Counter
	reg      metric.Registration

	stop   context.CancelFunc
	done   sync.WaitGroup
	closed atomic.Bool
}

var (
	_ cache.Shared            = (*Store)(nil)
	_ graphcheck.TenantLimits = (*Store)(nil)
)

// New validates cfg and returns a Store. It sends one PING (bounded by
// [Config.Timeout]) and subscribes to the fleet's invalidation channel in
// the background; Redis being unreachable is not an error, since the
// Store then works locally until Redis is back (see the package
// documentation). Its errors are configuration errors.
func New(cfg Config) (*Store, error) {
	if (cfg.URL == "") == (cfg.Client == nil) {
		return nil, errors.New("redisstore: Config needs exactly one of URL and Client")
	}
	if len(cfg.Key) < MinKeySize {
		return nil, fmt.Errorf("redisstore: Config.Key has %d bytes; it needs at least %d random bytes", len(cfg.Key), MinKeySize)
	}
	for i, k := range cfg.PreviousKeys {
		if len(k) < MinKeySize {
			return nil, fmt.Errorf("redisstore: Config.PreviousKeys[%d] has %d bytes; it needs at least %d", i, len(k), MinKeySize)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Timeout", cfg.Timeout}, {"LeaseTTL", cfg.LeaseTTL}, {"ProbeInterval", cfg.ProbeInterval}} {
		if d.v < 0 {
			return nil, fmt.Errorf("redisstore: Config.%s is negative (%v)", d.name, d.v)
		}
	}
	if strings.ContainsAny(cfg.Prefix, "{}\n ") {
		return nil, fmt.Errorf("redisstore: Config.Prefix %q contains a brace, a space or a newline", cfg.Prefix)
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, DefaultLeaseTTL)
	cfg.ProbeInterval = cmp.Or(cfg.ProbeInterval, DefaultProbeInterval)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.MeterProvider = cmp.Or(cfg.MeterProvider, otel.GetMeterProvider())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{cfg: cfg, client: cfg.Client, subs: map[int]func([]string){},
		rejectLog: rate.Sometimes{Interval: time.Minute}}
	s.keys = append([][]byte{cfg.Key}, cfg.PreviousKeys...)
	s.since.Store(cfg.Now().UnixNano())
	if s.client == nil {
		opts, err := parseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redisstore: Config.URL: %w", err)
		}
		// A replica must not wait on Redis longer than on Graph: short
		// dials and reads, and no retries beyond the one the call makes.
		opts.DialTimeout = min(cmp.Or(opts.DialTimeout, cfg.Timeout), cfg.Timeout)
		opts.ReadTimeout = min(cmp.Or(opts.ReadTimeout, cfg.Timeout), cfg.Timeout)
		opts.WriteTimeout = min(cmp.Or(opts.WriteTimeout, cfg.Timeout), cfg.Timeout)
		opts.MaxRetries = -1
		opts.DialerRetries = 1
		s.client, s.owned = redis.NewClient(opts), true
	}
	s.limiter = redis_rate.NewLimiter(s.client)
	if err := s.initMetrics(); err != nil {
		if s.owned {
			_ = s.client.Close()
		}
		return nil, err
	}

	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.probe(ctx)
	s.done.Add(2)
	go s.subscribe(ctx)
	go s.monitor(ctx)
	return s, nil
}

// Close stops the Store's goroutines and closes the client it made from
// [Config.URL]. Caches using the Store keep working, locally.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.stop()
	s.done.Wait()
	s.up.Store(false)
	s.since.Store(s.cfg.Now().UnixNano())
	if s.reg != nil {
		_ = s.reg.Unregister()
	}
	if s.owned {
		return s.client.Close()
	}
	return nil
}

// Connected reports whether the Store currently reaches Redis.
func (s *Store) Connected() bool { return s.up.Load() }

func (s *Store) initMetrics() error {
	m := s.cfg.MeterProvider.Meter("github.com/pimguard/pimguard/redisstore")
	var err error
	if s.errors, err = m.Int64Counter("pimguard.shared.errors", metric.WithUnit("{call}"),
		metric.WithDescription("Redis calls that failed or timed out; the replica served from Graph and its local cache instead")); err != nil {
		return fmt.Errorf("redisstore: metric pimguard.shared.errors: %w", err)
	}
	if s.rejected, err = m.Int64Counter("pimguard.shared.rejected", metric.WithUnit("{entry}"),
		metric.WithDescription("entries read from Redis that failed HMAC verification or decoding and were ignored")); err != nil {
		return fmt.Errorf("redisstore: metric pimguard.shared.rejected: %w", err)
	}
	connected, err := m.Int64ObservableGauge("pimguard.shared.connected",
		metric.WithDescription("1 while Redis is reachable; 0 while the replica works on its own"))
	if err != nil {
		return fmt.Errorf("redisstore: metric pimguard.shared.connected: %w", err)
	}
	s.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		v := int64(0)
		if s.up.Load() {
			v = 1
		}
		o.ObserveInt64(connected, v)
		return nil
	}, connected)
	if err != nil {
		return fmt.Errorf("redisstore: metric callback: %w", err)
	}
	return nil
}

// call runs op against Redis unless Redis is known to be unreachable,
// bounded by Config.Timeout, and turns its failure into a transition to
// local-only operation. A redis.Nil answer is not a failure.
func (s *Store) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if !s.up.Load() {
		return fmt.Errorf("%w (%s skipped)", ErrUnavailable, op)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	err := fn(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	s.failed(op, err)
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// failed counts a failed call and marks Redis unreachable.
func (s *Store) failed(op string, err error) {
	s.errors.Add(context.Background(), 1, metric.WithAttributes(attribute.String("op", op)))
	s.setUp(false, err)
}

// setUp records Redis's reachability, logging each transition once. On
// the way back up, the local copies of every cache are dropped: the
// invalidations published meanwhile were missed.
func (s *Store) setUp(up bool, cause error) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.up.Load() == up || s.closed.Load() {
		return
	}
	s.up.Store(up)
	s.since.Store(s.cfg.Now().UnixNano())
	if !up {
		s.cfg.Logger.Warn("redisstore: Redis unreachable; each replica now serves from Graph and its own cache until it is back",
			"error", cause.Error())
		return
	}
	s.cfg.Logger.Info("redisstore: Redis reachable; local copies dropped, since invalidations may have been missed")
	s.notify(nil)
}

// probe PINGs Redis and records the answer; after a PING that worked it
// also reads the fleet's InvalidateAll epoch.
func (s *Store) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		if !s.closed.Load() {
			s.failed("ping", err)
		}
		return
	}
	s.reconnected(ctx)
}

// reconnected runs when Redis answers again (a PING, or a subscription
// made anew): it reads the fleet's epoch and replays a purge that could not
// reach Redis as a fleet-wide InvalidateAll, and only then marks Redis
// reachable, which drops the local copies.
func (s *Store) reconnected(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.readEpoch(ctx); err != nil {
		s.setUp(false, err)
		return
	}
	if s.unflushed.Load() {
		if err := s.bumpEpoch(ctx); err != nil {
			s.setUp(false, err)
			return
		}
		s.unflushed.Store(false)
		s.cfg.Logger.Info("redisstore: replayed a purge that did not reach Redis as a fleet-wide invalidation")
	}
	s.setUp(true, nil)
}

// monitor probes Redis every ProbeInterval.
func (s *Store) monitor(ctx context.Context) {
	defer s.done.Done()
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.probe(ctx)
		}
	}
}

// subscribe listens on the invalidation channel. Every (re)subscription
// drops the local copies and re-reads the epoch: messages published while
// the subscription was down are lost.
func (s *Store) subscribe(ctx context.Context) {
	defer s.done.Done()
	ps := s.client.Subscribe(ctx, s.channel())
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(s.cfg.ProbeInterval))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					s.notify(nil)
					s.reconnected(ctx)
				}
			case *redis.Message:
				s.received(m.Payload)
			}
		}
	}
}

// Messages on the invalidation channel: "k\n" followed by keys, one a
// line, or "a <epoch>" after InvalidateAll. They carry no secret and
// grant nothing: a forged one can only make replicas drop local copies.
func (s *Store) received(payload string) {
	if rest, ok := strings.CutPrefix(payload, "a "); ok {
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
			s.raiseEpoch(n)
		}
		s.notify(nil)
		return
	}
	if rest, ok := strings.CutPrefix(payload, "k\n"); ok && rest != "" {
		s.notify(strings.Split(rest, "\n"))
	}
}

func (s *Store) readEpoch(ctx context.Context) error {
	n, err := s.client.Get(ctx, s.epochKey()).Uint64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if s.raiseEpoch(n) {
		// Another replica ran InvalidateAll and its message was missed:
		// the local copies are from before it.
		s.notify(nil)
	}
	return nil
}

// raiseEpoch moves the Store's epoch up to n, never down, and reports
// whether it moved.
func (s *Store) raiseEpoch(n uint64) bool {
	for {
		cur := s.epoch.Load()
		if n <= cur {
			return false
		}
		if s.epoch.CompareAndSwap(cur, n) {
			return true
		}
	}
}

// Subscribe implements [cache.Shared].
func (s *Store) Subscribe(fn func(keys []string)) (cancel func()) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.subID++
	id := s.subID
	s.subs[id] = fn
	return func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		delete(s.subs, id)
	}
}

func (s *Store) notify(keys []string) {
	s.subMu.Lock()
	fns := make([]func([]string), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.subMu.Unlock()
	for _, fn := range fns {
		fn(keys)
	}
}

// Key layout, all under Prefix:v1. An entry and its lease share the hash
// tag {key}, so that the scripts touching both run on one Cluster slot.
func (s *Store) entryKey(key string, epoch uint64) string {
	return s.cfg.Prefix + ":v1:entry:{" + key + "}:" + strconv.FormatUint(epoch, 10)
}

func (s *Store) leaseKey(key string, epoch uint64) string {
	return s.cfg.Prefix + ":v1:lease:{" + key + "}:" + strconv.FormatUint(epoch, 10)
}

func (s *Store) epochKey() string { return s.cfg.Prefix + ":v1:epoch" }

func (s *Store) channel() string { return s.cfg.Prefix + ":v1:invalidate" }

func (s *Store) pauseKey(tenantID string) string {
	return s.cfg.Prefix + ":v1:pause:{" + strings.ToLower(tenantID) + "}"
}

func (s *Store) bucketKey(tenantID, bucket string) string {
	return s.cfg.Prefix + ":v1:bucket:{" + strings.ToLower(tenantID) + "}:" + bucket
}
