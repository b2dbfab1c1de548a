package cache_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pimguard/pimguard/cache"
)

// t0 is the fake clock's start: 15 s before the 10:32:00 end of the
// assignment used in the NotAfter tests.
var t0 = time.Date(2025, 6, 2, 10, 31, 45, 0, time.UTC)

var errBoom = errors.New("graph: 503 service unavailable")

// clock is a settable clock. Nothing in these tests sleeps: time moves when
// a test says so.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// loader counts its calls and delegates each one, numbered from 1, to fn.
type loader struct {
	calls atomic.Int64
	fn    func(ctx context.Context, call int64, key string) (cache.Result[string], error)
}

func (l *loader) load(ctx context.Context, key string) (cache.Result[string], error) {
	return l.fn(ctx, l.calls.Add(1), key)
}

// constLoader always returns res.
func constLoader(res cache.Result[string]) *loader {
	return &loader{fn: func(context.Context, int64, string) (cache.Result[string], error) { return res, nil }}
}

func newCache(t *testing.T, cfg cache.Config, l *loader) *cache.Cache[string, string] {
	t.Helper()
	c, err := cache.New(cfg, l.load)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// get calls Get, requires no error and the wanted value and source, and
// returns the Info.
func get(t *testing.T, c *cache.Cache[string, string], key, wantValue string, wantSource cache.Source) cache.Info {
	t.Helper()
	v, info, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): unexpected error %v", key, err)
	}
	if v != wantValue || info.Source != wantSource {
		t.Fatalf("Get(%q) = %q, %v; want %q, %v", key, v, info.Source, wantValue, wantSource)
	}
	return info
}

func wantCalls(t *testing.T, l *loader, want int64) {
	t.Helper()
	if got := l.calls.Load(); got != want {
		t.Fatalf("loader called %d times, want %d", got, want)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	load := constLoader(cache.Result[string]{}).load
	tests := []struct {
		name    string
		cfg     cache.Config
		load    cache.LoadFunc[string, string]
		wantErr string // "" for success
	}{
		{name: "zero config", cfg: cache.Config{}, load: load},
		{name: "all set", cfg: cache.Config{Size: 5, TTL: time.Second, NegativeTTL: time.Second, MaxStale: time.Minute, LoadTimeout: time.Second, Now: time.Now}, load: load},
		{name: "nil loader", load: nil, wantErr: "nil LoadFunc"},
		{name: "negative size", cfg: cache.Config{Size: -1}, load: load, wantErr: "Size is negative"},
		{name: "negative TTL", cfg: cache.Config{TTL: -time.Second}, load: load, wantErr: "TTL is negative"},
		{name: "negative NegativeTTL", cfg: cache.Config{NegativeTTL: -1}, load: load, wantErr: "NegativeTTL is negative"},
		{name: "negative MaxStale", cfg: cache.Config{MaxStale: -1}, load: load, wantErr: "MaxStale is negative"},
		{name: "negative LoadTimeout", cfg: cache.Config{LoadTimeout: -1}, load: load, wantErr: "LoadTimeout is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := cache.New(tt.cfg, tt.load)
			if tt.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New = %v, %v; want a cache", c, err)
				}
				return
			}
			if !errors.Is(err, cache.ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "cache: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v; want ErrInvalidConfig mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestExpiry checks that an entry is fresh one nanosecond before its expiry
// and gone exactly at it, for every way the expiry is decided.
func TestExpiry(t *testing.T) {
	tests := []struct {
		name     string
		cfg      cache.Config
		res      cache.Result[string]
		freshFor time.Duration
	}{
		{name: "default TTL", res: cache.Result[string]{Value: "v"}, freshFor: cache.DefaultTTL},
		{name: "TTL", cfg: cache.Config{TTL: time.Minute}, res: cache.Result[string]{Value: "v"}, freshFor: time.Minute},
		{name: "NotAfter before TTL wins", res: cache.Result[string]{Value: "v", NotAfter: t0.Add(15 * time.Second)}, freshFor: 15 * time.Second},
		{name: "TTL before NotAfter wins", res: cache.Result[string]{Value: "v", NotAfter: t0.Add(time.Hour)}, freshFor: cache.DefaultTTL},
		{name: "default negative TTL", res: cache.Result[string]{Negative: true}, freshFor: cache.DefaultNegativeTTL},
		{name: "negative TTL", cfg: cache.Config{NegativeTTL: 2 * time.Second}, res: cache.Result[string]{Negative: true}, freshFor: 2 * time.Second},
		{name: "NotAfter before negative TTL wins", res: cache.Result[string]{Negative: true, NotAfter: t0.Add(time.Second)}, freshFor: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tt.cfg.Now = clk.Now
			l := constLoader(tt.res)
			c := newCache(t, tt.cfg, l)
			expires := t0.Add(tt.freshFor)

			if info := get(t, c, "k", tt.res.Value, cache.Loaded); !info.Expires.Equal(expires) {
				t.Fatalf("Expires = %v, want %v", info.Expires, expires)
			}
			clk.Set(expires.Add(-time.Nanosecond))
			get(t, c, "k", tt.res.Value, cache.Hit)
			wantCalls(t, l, 1)

			clk.Set(expires)
			get(t, c, "k", tt.res.Value, cache.Loaded)
			wantCalls(t, l, 2)
			if st := c.Stats(); st.Hits != 1 || st.Misses != 2 || st.Loads != 2 {
				t.Fatalf("Stats = %+v; want 1 hit, 2 misses, 2 loads", st)
			}
		})
	}
}

// TestNotAfterAlreadyPast: a value the loader no longer vouches for is handed
// to the callers of that load but never served as fresh.
func TestNotAfterAlreadyPast(t *testing.T) {
	for _, notAfter := range []time.Time{t0.Add(-time.Second), t0} {
		t.Run(notAfter.Sub(t0).String(), func(t *testing.T) {
			clk := newClock()
			l := constLoader(cache.Result[string]{Value: "v", NotAfter: notAfter})
			c := newCache(t, cache.Config{Now: clk.Now}, l)

			if info := get(t, c, "k", "v", cache.Loaded); !info.Expires.Equal(notAfter) {
				t.Fatalf("Expires = %v, want %v", info.Expires, notAfter)
			}
			if n := c.Len(); n != 0 {
				t.Fatalf("Len = %d, want 0: an expired value was stored", n)
			}
			get(t, c, "k", "v", cache.Loaded)
			wantCalls(t, l, 2)
		})
	}
}

func TestInfoLoadTime(t *testing.T) {
	clk := newClock()
	l := &loader{fn: func(context.Context, int64, string) (cache.Result[string], error) {
		clk.Advance(250 * time.Millisecond)
		return cache.Result[string]{Value: "v"}, nil
	}}
	c := newCache(t, cache.Config{Now: clk.Now}, l)
	for _, src := range []cache.Source{cache.Loaded, cache.Hit} {
		info := get(t, c, "k", "v", src)
		if info.LoadTime != 250*time.Millisecond {
			t.Errorf("%v: LoadTime = %v, want 250ms", src, info.LoadTime)
		}
		// The TTL counts from the start of the load, not its end.
		if want := t0.Add(cache.DefaultTTL); !info.Expires.Equal(want) {
			t.Errorf("%v: Expires = %v, want %v", src, info.Expires, want)
		}
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	l := &loader{fn: func(_ context.Context, call int64, _ string) (cache.Result[string], error) {
		if call == 1 {
			return cache.Result[string]{Value: "ignored"}, errBoom
		}
		return cache.Result[string]{Value: "v"}, nil
	}}
	c := newCache(t, cache.Config{Now: newClock().Now}, l)

	v, info, err := c.Get(context.Background(), "k")
	if !errors.Is(err, errBoom) || v != "" || info != (cache.Info{}) {
		t.Fatalf("Get = %q, %+v, %v; want zero value, zero Info, %v", v, info, err, errBoom)
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d after a failed load, want 0", n)
	}
	get(t, c, "k", "v", cache.Loaded)
	if st := c.Stats(); st.Loads != 2 || st.LoadErrors != 1 {
		t.Fatalf("Stats = %+v; want 2 loads, 1 error", st)
	}
}

func TestLoaderPanicBecomesError(t *testing.T) {
	l := &loader{fn: func(_ context.Context, call int64, _ string) (cache.Result[string], error) {
		if call == 1 {
			panic("boom")
		}
		return cache.Result[string]{Value: "v"}, nil
	}}
	c := newCache(t, cache.Config{Now: newClock().Now}, l)
	if _, _, err := c.Get(context.Background(), "k"); !errors.Is(err, cache.ErrLoaderPanicked) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Get error = %v; want ErrLoaderPanicked mentioning boom", err)
	}
	get(t, c, "k", "v", cache.Loaded)
}

// TestStaleIfError loads "v" at t0 (fresh until t0+30s), then lets every
// later load fail at the given time.
func TestStaleIfError(t *testing.T) {
	expiry := t0.Add(cache.DefaultTTL)
	tests := []struct {
		name      string
		maxStale  time.Duration
		at        time.Time
		purge     bool
		wantStale bool
	}{
		{name: "off by default", at: expiry},
		{name: "within MaxStale", maxStale: time.Minute, at: expiry.Add(time.Minute - time.Nanosecond), wantStale: true},
		{name: "at MaxStale past expiry", maxStale: time.Minute, at: expiry.Add(time.Minute)},
		{name: "purged entry", maxStale: time.Minute, at: expiry, purge: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			l := &loader{fn: func(_ context.Context, call int64, _ string) (cache.Result[string], error) {
				if call == 1 {
					return cache.Result[string]{Value: "v"}, nil
				}
				return cache.Result[string]{}, errBoom
			}}
			c := newCache(t, cache.Config{Now: clk.Now, MaxStale: tt.maxStale}, l)
			get(t, c, "k", "v", cache.Loaded)
			if tt.purge {
				c.Purge("k")
			}
			clk.Set(tt.at)

			v, info, err := c.Get(context.Background(), "k")
			if !tt.wantStale {
				if !errors.Is(err, errBoom) || v != "" {
					t.Fatalf("Get = %q, %v; want the load error", v, err)
				}
				return
			}
			if err != nil || v != "v" || info.Source != cache.Stale || !errors.Is(info.LoadErr, errBoom) || !info.Expires.Equal(expiry) {
				t.Fatalf("Get = %q, %+v, %v; want stale v expired at %v with LoadErr", v, info, err, expiry)
			}
			// Serving stale does not make the entry fresh: the next Get loads again.
			c.Get(context.Background(), "k")
			wantCalls(t, l, 3)
			if st := c.Stats(); st.StaleServed != 2 {
				t.Fatalf("StaleServed = %d, want 2", st.StaleServed)
			}
		})
	}
}

// TestStaleKeepsExpiredLoad: with MaxStale on, a load whose NotAfter already
// passed is not fresh, but it is the newest knowledge and can serve as stale.
func TestStaleKeepsExpiredLoad(t *testing.T) {
	clk := newClock()
	l := &loader{fn: func(_ context.Context, call int64, _ string) (cache.Result[string], error) {
		if call == 1 {
			return cache.Result[string]{Value: "v", NotAfter: t0.Add(-time.Second)}, nil
		}
		return cache.Result[string]{}, errBoom
	}}
	c := newCache(t, cache.Config{Now: clk.Now, MaxStale: time.Minute}, l)
	get(t, c, "k", "v", cache.Loaded)
	get(t, c, "k", "v", cache.Stale)
	wantCalls(t, l, 2)
}

// TestCoalescing: 1000 concurrent cold Gets make one load. synctest.Wait
// returns once every caller is blocked, one in the loader and the others
// waiting for it, so no caller can arrive after the load is over.
func TestCoalescing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		l := &loader{fn: func(context.Context, int64, string) (cache.Result[string], error) {
			<-release
			return cache.Result[string]{Value: "v"}, nil
		}}
		c := newCache(t, cache.Config{}, l)

		const n = 1000
		var (
			wg     sync.WaitGroup
			shared atomic.Int64
			bad    atomic.Int64
		)
		for range n {
			wg.Go(func() {
				v, info, err := c.Get(t.Context(), "k")
				if err != nil || v != "v" || info.Source != cache.Loaded {
					bad.Add(1)
				}
				if info.Shared {
					shared.Add(1)
				}
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()

		wantCalls(t, l, 1)
		if b := bad.Load(); b != 0 {
			t.Errorf("%d Gets did not return the loaded value", b)
		}
		if s := shared.Load(); s != n-1 {
			t.Errorf("%d Gets report Shared, want %d", s, n-1)
		}
	})
}

// TestFirstCallerLeaving: the caller that started a load gives up; the load
// goes on and the caller that joined it gets the value.
func TestFirstCallerLeaving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var loadCtxErr error
		l := &loader{fn: func(ctx context.Context, _ int64, _ string) (cache.Result[string], error) {
			<-release
			loadCtxErr = ctx.Err()
			return cache.Result[string]{Value: "v"}, nil
		}}
		c := newCache(t, cache.Config{}, l)

		firstCtx, cancelFirst := context.WithCancel(t.Context())
		firstErr := make(chan error)
		go func() {
			_, _, err := c.Get(firstCtx, "k")
			firstErr <- err
		}()
		synctest.Wait() // the first caller's load is running

		type result struct {
			v    string
			info cache.Info
			err  error
		}
		second := make(chan result)
		go func() {
			v, info, err := c.Get(t.Context(), "k")
			second <- result{v, info, err}
		}()
		synctest.Wait() // the second caller has joined

		cancelFirst()
		if err := <-firstErr; !errors.Is(err, context.Canceled) {
			t.Errorf("first Get error = %v, want context.Canceled", err)
		}
		close(release)
		r := <-second
		if r.err != nil || r.v != "v" || !r.info.Shared {
			t.Fatalf("second Get = %q, %+v, %v; want shared v", r.v, r.info, r.err)
		}
		if loadCtxErr != nil {
			t.Errorf("load context error = %v, want nil", loadCtxErr)
		}
		get(t, c, "k", "v", cache.Hit)
		wantCalls(t, l, 1)
	})
}

// TestCallerContext: a caller stops waiting as soon as its own context is
// done, while the load is still blocked.
func TestCallerContext(t *testing.T) {
	tests := []struct {
		name      string
		ctx       func(t *testing.T) (context.Context, context.CancelFunc)
		cancel    bool // cancel once the load is running
		want      error
		wantLoads int64
	}{
		{
			name:      "canceled",
			ctx:       func(t *testing.T) (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) },
			cancel:    true,
			want:      context.Canceled,
			wantLoads: 1,
		},
		{
			name: "deadline",
			ctx: func(t *testing.T) (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), time.Second)
			},
			want:      context.DeadlineExceeded,
			wantLoads: 1,
		},
		{
			name: "already canceled starts no load",
			ctx: func(t *testing.T) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx, cancel
			},
			want:      context.Canceled,
			wantLoads: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				l := &loader{fn: func(context.Context, int64, string) (cache.Result[string], error) {
					<-release
					return cache.Result[string]{Value: "v"}, nil
				}}
				c := newCache(t, cache.Config{}, l)
				ctx, cancel := tt.ctx(t)
				defer cancel()

				errc := make(chan error)
				go func() {
					_, _, err := c.Get(ctx, "k")
					errc <- err
				}()
				synctest.Wait()
				if tt.cancel {
					cancel()
				}
				if err := <-errc; !errors.Is(err, tt.want) {
					t.Errorf("Get error = %v, want %v", err, tt.want)
				}
				wantCalls(t, l, tt.wantLoads)
				close(release)
			})
		})
	}
}

func TestLoadTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now() // the bubble's fake clock
		var deadline time.Time
		l := &loader{fn: func(ctx context.Context, _ int64, _ string) (cache.Result[string], error) {
			deadline, _ = ctx.Deadline()
			<-ctx.Done()
			return cache.Result[string]{}, ctx.Err()
		}}
		c := newCache(t, cache.Config{LoadTimeout: 3 * time.Second}, l)
		if _, _, err := c.Get(t.Context(), "k"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get error = %v, want context.DeadlineExceeded", err)
		}
		if want := start.Add(3 * time.Second); !deadline.Equal(want) {
			t.Fatalf("load deadline = %v, want %v", deadline, want)
		}
	})
}

func TestPurge(t *testing.T) {
	tests := []struct {
		name       string
		purge      func(c *cache.Cache[string, string])
		wantB      cache.Source
		wantLen    int
		wantLoadsB int64
	}{
		{name: "Purge", purge: func(c *cache.Cache[string, string]) { c.Purge("a") }, wantB: cache.Hit, wantLen: 1},
		{name: "PurgeAll", purge: (*cache.Cache[string, string]).PurgeAll, wantB: cache.Loaded, wantLen: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &loader{fn: func(_ context.Context, _ int64, key string) (cache.Result[string], error) {
				return cache.Result[string]{Value: key}, nil
			}}
			c := newCache(t, cache.Config{Now: newClock().Now}, l)
			get(t, c, "a", "a", cache.Loaded)
			get(t, c, "b", "b", cache.Loaded)
			tt.purge(c)
			if n := c.Len(); n != tt.wantLen {
				t.Fatalf("Len = %d after purge, want %d", n, tt.wantLen)
			}
			get(t, c, "a", "a", cache.Loaded)
			get(t, c, "b", "b", tt.wantB)
		})
	}
}

// TestPurgeDuringLoad: a purge wins over a load already running. Load 1
// blocks and returns "old"; later loads return "new" at once.
func TestPurgeDuringLoad(t *testing.T) {
	purges := map[string]func(c *cache.Cache[string, string]){
		"Purge":    func(c *cache.Cache[string, string]) { c.Purge("k") },
		"PurgeAll": (*cache.Cache[string, string]).PurgeAll,
	}
	for name, purge := range purges {
		for _, getDuringLoad := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/getDuringLoad=%t", name, getDuringLoad), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					release := make(chan struct{})
					l := &loader{fn: func(_ context.Context, call int64, _ string) (cache.Result[string], error) {
						if call == 1 {
							<-release
							return cache.Result[string]{Value: "old"}, nil
						}
						return cache.Result[string]{Value: "new"}, nil
					}}
					c := newCache(t, cache.Config{}, l)

					first := make(chan string)
					go func() {
						v, _, _ := c.Get(t.Context(), "k")
						first <- v
					}()
					synctest.Wait() // load 1 is running
					purge(c)

					if getDuringLoad {
						// Must start its own load rather than join load 1.
						second := make(chan cache.Info, 1)
						go func() {
							_, info, _ := c.Get(t.Context(), "k")
							second <- info
						}()
						synctest.Wait()
						select {
						case info := <-second:
							if info.Source != cache.Loaded || info.Shared {
								t.Errorf("Get after purge: %+v, want its own load", info)
							}
						default:
							close(release)
							t.Fatal("Get after purge joined the load started before it")
						}
					}

					close(release)
					if v := <-first; v != "old" {
						t.Errorf("first Get = %q, want old (its own load's result)", v)
					}
					want := cache.Loaded
					if getDuringLoad {
						want = cache.Hit
					}
					get(t, c, "k", "new", want)
					wantCalls(t, l, 2)
				})
			})
		}
	}
}

func TestLRUEviction(t *testing.T) {
	l := &loader{fn: func(_ context.Context, _ int64, key string) (cache.Result[string], error) {
		return cache.Result[string]{Value: key}, nil
	}}
	c := newCache(t, cache.Config{Size: 3, Now: newClock().Now}, l)
	for _, k := range []string{"a", "b", "c"} {
		get(t, c, k, k, cache.Loaded)
	}
	get(t, c, "a", "a", cache.Hit) // b is now the least recently used
	get(t, c, "d", "d", cache.Loaded)
	if n := c.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	get(t, c, "a", "a", cache.Hit)
	get(t, c, "c", "c", cache.Hit)
	get(t, c, "d", "d", cache.Hit)
	get(t, c, "b", "b", cache.Loaded)
	if st := c.Stats(); st.Evictions != 2 {
		t.Fatalf("Evictions = %d, want 2", st.Evictions)
	}
}

// TestShardedSizeBound: a sharded cache never holds more than Size entries.
func TestShardedSizeBound(t *testing.T) {
	l := &loader{fn: func(_ context.Context, _ int64, key string) (cache.Result[string], error) {
		return cache.Result[string]{Value: key}, nil
	}}
	const size = 256
	c := newCache(t, cache.Config{Size: size, Now: newClock().Now}, l)
	for i := range 10 * size {
		k := fmt.Sprint(i)
		get(t, c, k, k, cache.Loaded)
	}
	if n := c.Len(); n > size || n < size/2 {
		t.Fatalf("Len = %d, want at most %d and not far below", n, size)
	}
	if st := c.Stats(); st.Evictions != uint64(10*size-c.Len()) {
		t.Fatalf("Evictions = %d, want %d", st.Evictions, 10*size-c.Len())
	}
}

// TestNoGoroutineOutlivesUse: synctest.Test fails if any goroutine started
// in the bubble is still blocked when the test function returns, so this
// exercises every path that starts one (loads, abandoned loads, errors,
// purges) and closes nothing: the cache has nothing to close.
func TestNoGoroutineOutlivesUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &loader{fn: func(ctx context.Context, call int64, key string) (cache.Result[string], error) {
			switch key {
			case "slow": // outlives its only caller, ends at LoadTimeout
				<-ctx.Done()
				return cache.Result[string]{}, ctx.Err()
			case "err":
				return cache.Result[string]{}, errBoom
			}
			return cache.Result[string]{Value: key}, nil
		}}
		c := newCache(t, cache.Config{MaxStale: time.Minute}, l)
		get(t, c, "a", "a", cache.Loaded)
		get(t, c, "a", "a", cache.Hit)
		c.Get(t.Context(), "err")
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, _, err := c.Get(ctx, "slow"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get(slow) error = %v, want context.DeadlineExceeded", err)
		}
		c.Purge("a")
		c.PurgeAll()
		// The abandoned load ends at LoadTimeout. This is the bubble's fake
		// clock: the sleep returns at once.
		time.Sleep(cache.DefaultLoadTimeout)
	})
}

func TestSourceString(t *testing.T) {
	for src, want := range map[cache.Source]string{0: "none", cache.Hit: "hit", cache.Loaded: "loaded", cache.Stale: "stale", cache.FromShared: "shared", 9: "Source(9)"} {
		if got := src.String(); got != want {
			t.Errorf("Source(%d).String() = %q, want %q", uint8(src), got, want)
		}
	}
}
