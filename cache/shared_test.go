package cache_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/cache"
)

// memShared is an in-memory cache.Shared shared by the Caches of one test,
// standing in for the processes of a fleet. It implements the interface's
// contract plainly (no coalescing across Caches: redisstore's tests
// cover that against a real Redis).
type memShared struct {
	mu      sync.Mutex
	entries map[string]cache.SharedEntry
	subs    []func([]string)
	down    bool
}

func newMemShared() *memShared { return &memShared{entries: map[string]cache.SharedEntry{}} }

func (m *memShared) Fetch(ctx context.Context, key string, fill func(context.Context) (cache.SharedEntry, error)) (cache.SharedEntry, bool, error) {
	m.mu.Lock()
	e, ok := m.entries[key]
	down := m.down
	m.mu.Unlock()
	if ok && !down {
		return e, false, nil
	}
	e, err := fill(ctx)
	if err == nil && !down {
		m.mu.Lock()
		m.entries[key] = e
		m.mu.Unlock()
	}
	return e, true, err
}

func (m *memShared) Invalidate(_ context.Context, keys ...string) error {
	m.mu.Lock()
	for _, k := range keys {
		delete(m.entries, k)
	}
	subs := m.subs
	m.mu.Unlock()
	for _, fn := range subs {
		fn(keys)
	}
	return nil
}

func (m *memShared) InvalidateAll(context.Context) error {
	m.mu.Lock()
	clear(m.entries)
	subs := m.subs
	m.mu.Unlock()
	for _, fn := range subs {
		fn(nil)
	}
	return nil
}

func (m *memShared) Subscribe(fn func([]string)) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = append(m.subs, fn)
	return func() {}
}

// stringCodec encodes strings as themselves; it refuses values starting
// with "!" so that tests can make an undecodable entry.
type stringCodec struct{}

func (stringCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (stringCodec) Decode(b []byte) (string, error) {
	if strings.HasPrefix(string(b), "!") {
		return "", errors.New("undecodable")
	}
	return string(b), nil
}

func newSharedCache(t *testing.T, cfg cache.Config, l *loader, m *memShared) *cache.Cache[string, string] {
	t.Helper()
	c, err := cache.NewShared(cfg, l.load, m, stringCodec{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewSharedNeedsCodec(t *testing.T) {
	_, err := cache.NewShared(cache.Config{}, constLoader(cache.Result[string]{}).load, newMemShared(), nil)
	if !errors.Is(err, cache.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
}

// Two Caches on one tier: one loads, the other reads what it loaded, with
// the same expiry, and serves it locally afterwards.
func TestSharedTierServesOtherProcesses(t *testing.T) {
	clk := newClock()
	m := newMemShared()
	l := &loader{fn: func(_ context.Context, call int64, key string) (cache.Result[string], error) {
		return cache.Result[string]{Value: key + "-v", NotAfter: t0.Add(10 * time.Second)}, nil
	}}
	a := newSharedCache(t, cache.Config{Now: clk.Now, TTL: time.Minute}, l, m)
	b := newSharedCache(t, cache.Config{Now: clk.Now, TTL: time.Minute}, l, m)

	ia := get(t, a, "k", "k-v", cache.Loaded)
	ib := get(t, b, "k", "k-v", cache.FromShared)
	wantCalls(t, l, 1)
	if !ia.Expires.Equal(ib.Expires) || !ib.Expires.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("expiries %v and %v; want both at the loader's NotAfter", ia.Expires, ib.Expires)
	}
	get(t, b, "k", "k-v", cache.Hit)
	if st := b.Stats(); st.SharedHits != 1 || st.Loads != 0 {
		t.Fatalf("b's stats %+v; want 1 shared hit, 0 loads", st)
	}
	clk.Advance(10 * time.Second) // NotAfter reached: nobody serves it
	get(t, b, "k", "k-v", cache.Loaded)
	wantCalls(t, l, 2)
}

func TestSharedPurgeReachesEveryCache(t *testing.T) {
	for _, tc := range []struct {
		name  string
		purge func(c *cache.Cache[string, string])
	}{
		{"Purge", func(c *cache.Cache[string, string]) { c.Purge("k") }},
		{"PurgeAll", (*cache.Cache[string, string]).PurgeAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemShared()
			l := &loader{fn: func(_ context.Context, call int64, key string) (cache.Result[string], error) {
				return cache.Result[string]{Value: key + string(rune('0'+call))}, nil
			}}
			clk := newClock()
			a := newSharedCache(t, cache.Config{Now: clk.Now}, l, m)
			b := newSharedCache(t, cache.Config{Now: clk.Now}, l, m)
			get(t, a, "k", "k1", cache.Loaded)
			get(t, b, "k", "k1", cache.FromShared)
			tc.purge(a)
			get(t, b, "k", "k2", cache.Loaded) // b's local copy went too
			get(t, a, "k", "k2", cache.FromShared)
		})
	}
}

// An invalidation arriving while a load runs keeps its result out of the
// local cache (it still answers the Gets waiting for it).
func TestSharedInvalidationDuringLoad(t *testing.T) {
	m := newMemShared()
	release := make(chan struct{})
	started := make(chan struct{})
	l := &loader{fn: func(_ context.Context, call int64, key string) (cache.Result[string], error) {
		if call == 1 {
			close(started)
			<-release
			return cache.Result[string]{Value: "old"}, nil
		}
		return cache.Result[string]{Value: "new"}, nil
	}}
	c := newSharedCache(t, cache.Config{Now: newClock().Now}, l, m)
	done := make(chan string)
	go func() { v, _, _ := c.Get(context.Background(), "k"); done <- v }()
	<-started
	_ = m.Invalidate(context.Background(), "k") // another process purged
	close(release)
	if v := <-done; v != "old" {
		t.Fatalf("the waiting Get got %q", v)
	}
	m.mu.Lock()
	delete(m.entries, "k") // the tier's own store is redisstore's business
	m.mu.Unlock()
	get(t, c, "k", "new", cache.Loaded)
}

func TestSharedEntryUnusableIsLoadedLocally(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry cache.SharedEntry
	}{
		{"undecodable", cache.SharedEntry{Data: []byte("!x"), Expires: t0.Add(time.Minute)}},
		{"expired on this clock", cache.SharedEntry{Data: []byte("stale"), Expires: t0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemShared()
			m.entries["k"] = tc.entry
			c := newSharedCache(t, cache.Config{Now: newClock().Now}, constLoader(cache.Result[string]{Value: "fresh"}), m)
			get(t, c, "k", "fresh", cache.Loaded)
		})
	}
}

func TestSharedTierDownStillLoads(t *testing.T) {
	m := newMemShared()
	m.down = true
	l := constLoader(cache.Result[string]{Value: "v"})
	a := newSharedCache(t, cache.Config{Now: newClock().Now}, l, m)
	b := newSharedCache(t, cache.Config{Now: newClock().Now}, l, m)
	get(t, a, "k", "v", cache.Loaded)
	get(t, b, "k", "v", cache.Loaded)
	get(t, a, "k", "v", cache.Hit)
	wantCalls(t, l, 2)
}
