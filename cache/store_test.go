package cache_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pimguard/pimguard/cache"
)

func newStore[K comparable](t *testing.T, size int) *cache.Store[K, string] {
	t.Helper()
	s, err := cache.NewStore[K, string](size)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewStoreValidatesSize(t *testing.T) {
	for _, size := range []int{0, -1} {
		if _, err := cache.NewStore[string, int](size); !errors.Is(err, cache.ErrInvalidConfig) {
			t.Errorf("NewStore(%d) = %v, want ErrInvalidConfig", size, err)
		}
	}
}

// TestStoreExpiry checks that Get serves an entry strictly before its
// expiry, and Peek whatever is stored.
func TestStoreExpiry(t *testing.T) {
	s := newStore[string](t, 8)
	s.Add("k", "v", t0.Add(time.Minute))
	for _, tt := range []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"before", t0, true},
		{"just before", t0.Add(time.Minute - time.Nanosecond), true},
		{"at expiry", t0.Add(time.Minute), false},
		{"after", t0.Add(time.Hour), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if v, ok := s.Get("k", tt.now); ok != tt.ok || ok && v != "v" {
				t.Errorf("Get = %q, %v; want ok %v", v, ok, tt.ok)
			}
		})
	}
	if v, exp, ok := s.Peek("k"); !ok || v != "v" || !exp.Equal(t0.Add(time.Minute)) {
		t.Errorf("Peek = %q, %v, %v", v, exp, ok)
	}
	if n := s.Len(); n != 1 {
		t.Errorf("Len = %d, want 1 (expired entries stay until replaced)", n)
	}
}

// TestStoreGenerations checks that a purge of the key, or of everything,
// after a writer read its generation makes StoreIf refuse that writer,
// while a plain Remove or no purge does not.
func TestStoreGenerations(t *testing.T) {
	later := t0.Add(time.Hour)
	for _, tt := range []struct {
		name   string
		meddle func(s *cache.Store[string, string])
		stored bool
	}{
		{"no purge", func(*cache.Store[string, string]) {}, true},
		{"Remove", func(s *cache.Store[string, string]) { s.Remove("k") }, true},
		{"Purge", func(s *cache.Store[string, string]) { s.Purge("k") }, false},
		{"PurgeAll", func(s *cache.Store[string, string]) { s.PurgeAll() }, false},
		{"concurrent PurgeAll", func(s *cache.Store[string, string]) {
			var wg sync.WaitGroup
			wg.Go(s.PurgeAll)
			wg.Wait()
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore[string](t, 512) // sharded
			s.Add("k", "old", later)
			gen := s.Generation("k")
			tt.meddle(s)
			if got := s.StoreIf(gen, "k", "new", later); got != tt.stored {
				t.Fatalf("StoreIf = %v, want %v", got, tt.stored)
			}
			v, ok := s.Get("k", t0)
			if tt.stored && (!ok || v != "new") {
				t.Errorf("Get = %q, %v; want the stored value", v, ok)
			}
			if !tt.stored && ok {
				t.Errorf("Get = %q after a purge overtook the writer; want nothing", v)
			}
			if s.StoreIf(s.Generation("k"), "k", "newest", later) != true {
				t.Error("StoreIf with a generation read after the purge refused")
			}
		})
	}
}

func tokenLikeKey(i int) [sha256.Size]byte {
	var k [sha256.Size]byte
	k[1], k[2] = byte(i), byte(i>>8) // k[0] is the same for every key
	return k
}

// TestStoreShardsArrayKeys checks that [32]byte keys are spread over the
// shards by hashing the whole key: keys that share their first byte (which
// a store sharding by k[0] would put in one shard of size/16) fill the
// whole store.
func TestStoreShardsArrayKeys(t *testing.T) {
	const size = 512
	s, err := cache.NewStore[[sha256.Size]byte, int](size)
	if err != nil {
		t.Fatal(err)
	}
	for i := range size {
		s.Add(tokenLikeKey(i), i, t0.Add(time.Hour))
	}
	if n := s.Len(); n < size*3/4 {
		t.Errorf("Len = %d after %d distinct keys, want most of them kept", n, size)
	}
	k := tokenLikeKey(size - 1)
	if allocs := testing.AllocsPerRun(100, func() { _, _ = s.Get(k, t0) }); allocs != 0 {
		t.Errorf("a hit allocates %.0f times, want 0", allocs)
	}
}

func TestStoreRemoveFunc(t *testing.T) {
	s := newStore[int](t, 1024)
	for i := range 100 {
		s.Add(i, map[bool]string{true: "even", false: "odd"}[i%2 == 0], t0.Add(time.Hour))
	}
	if n := s.RemoveFunc(func(_ int, v string) bool { return v == "even" }); n != 50 {
		t.Errorf("RemoveFunc dropped %d, want 50", n)
	}
	if n := s.Len(); n != 50 {
		t.Errorf("Len = %d, want 50", n)
	}
	if _, ok := s.Get(2, t0); ok {
		t.Error("an even key survived")
	}
	if _, ok := s.Get(3, t0); !ok {
		t.Error("an odd key was dropped")
	}
}

// TestStoreConcurrentUse runs every operation at once, for -race.
func TestStoreConcurrentUse(t *testing.T) {
	s := newStore[int](t, 256)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				k := (i * (w + 1)) % 300
				switch i % 5 {
				case 0:
					s.StoreIf(s.Generation(k), k, "v", t0.Add(time.Hour))
				case 1:
					s.Get(k, t0)
				case 2:
					s.Purge(k)
				case 3:
					s.RemoveFunc(func(k int, _ string) bool { return k%7 == 0 })
				default:
					s.Add(k, "v", t0.Add(time.Hour))
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			s.PurgeAll()
			_ = s.Len()
			_ = s.Evictions()
		}
	})
	wg.Wait()
	if n := s.Len(); n > 256 {
		t.Errorf("Len = %d, over the size", n)
	}
}

// TestFlight checks that concurrent callers share one call, that a caller
// leaving does not cancel it, that its context is detached and bounded by
// the timeout, and that Forget makes later callers start a new call.
func TestFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f cache.Flight[int]
		release := make(chan struct{})
		calls := 0
		fn := func(ctx context.Context) (int, error) {
			calls++
			if _, ok := ctx.Deadline(); !ok {
				return 0, errors.New("no deadline")
			}
			<-release
			return calls, ctx.Err()
		}
		leaving, leave := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := f.Do(leaving, "k", time.Hour, fn)
			first <- err
		}()
		synctest.Wait() // the call runs
		second := make(chan int, 1)
		go func() {
			v, err := f.Do(context.Background(), "k", time.Hour, fn)
			if err != nil {
				t.Error(err)
			}
			second <- v
		}()
		synctest.Wait() // the second caller has joined
		leave()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Errorf("leaving caller: %v, want context.Canceled", err)
		}
		f.Forget("k")
		close(release)
		if v := <-second; v != 1 {
			t.Errorf("joined caller got call %d, want 1 (the shared call, not cancelled)", v)
		}
		if v, err := f.Do(context.Background(), "k", 0, func(ctx context.Context) (int, error) {
			if _, ok := ctx.Deadline(); ok {
				return 0, errors.New("a deadline with timeout 0")
			}
			return 42, nil
		}); err != nil || v != 42 {
			t.Errorf("after Forget: %d, %v; want a new call", v, err)
		}
		done, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.Do(done, "x", time.Hour, func(context.Context) (int, error) {
			t.Error("fn ran for a done context")
			return 0, nil
		}); !errors.Is(err, context.Canceled) {
			t.Errorf("done context: %v", err)
		}
	})
}
