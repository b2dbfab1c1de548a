package cache_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/pimguard/pimguard/cache"
)

// benchKeys is the working set of the parallel benchmarks: enough keys to
// spread over every shard, few enough to stay cached.
const benchKeys = 4096

func benchCache(b *testing.B) (*cache.Cache[string, string], []string) {
	b.Helper()
	c, err := cache.New(cache.Config{}, func(_ context.Context, key string) (cache.Result[string], error) {
		return cache.Result[string]{Value: key}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "principal-" + strconv.Itoa(i)
		if _, _, err := c.Get(context.Background(), keys[i]); err != nil {
			b.Fatal(err)
		}
	}
	return c, keys
}

// benchLRU is the baseline: one un-sharded golang-lru cache holding the same
// keys. The "baseline-lru" runs read it without any expiry check, the
// "baseline-lru-now" runs add the clock read that an expiry check needs.
func benchLRU(b *testing.B) (*lru.Cache[string, string], []string) {
	b.Helper()
	l, err := lru.New[string, string](cache.DefaultSize)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "principal-" + strconv.Itoa(i)
		l.Add(keys[i], keys[i])
	}
	return l, keys
}

// BenchmarkGetHit measures one goroutine reading one warm key. Run with
// -benchmem: a hit should allocate nothing.
func BenchmarkGetHit(b *testing.B) {
	b.Run("cache", func(b *testing.B) {
		c, keys := benchCache(b)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := c.Get(ctx, keys[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-lru", func(b *testing.B) {
		l, keys := benchLRU(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := l.Get(keys[0]); !ok {
				b.Fatal("miss")
			}
		}
	})
	// The same plus the clock read every hit needs for its expiry check:
	// the fair un-sharded baseline.
	b.Run("baseline-lru-now", func(b *testing.B) {
		l, keys := benchLRU(b)
		expires := time.Now().Add(time.Hour)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := l.Get(keys[0]); !ok || !time.Now().Before(expires) {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkGetHitParallel measures warm reads of many keys from GOMAXPROCS
// goroutines, where the baseline's single mutex is contended and the shards
// are not.
func BenchmarkGetHitParallel(b *testing.B) {
	b.Run("cache", func(b *testing.B) {
		c, keys := benchCache(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, _, err := c.Get(ctx, keys[i%benchKeys]); err != nil {
					b.Error(err)
					return
				}
				i += 7
			}
		})
	})
	b.Run("baseline-lru", func(b *testing.B) {
		l, keys := benchLRU(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := l.Get(keys[i%benchKeys]); !ok {
					b.Error("miss")
					return
				}
				i += 7
			}
		})
	})
	b.Run("baseline-lru-now", func(b *testing.B) {
		l, keys := benchLRU(b)
		expires := time.Now().Add(time.Hour)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := l.Get(keys[i%benchKeys]); !ok || !time.Now().Before(expires) {
					b.Error("miss")
					return
				}
				i += 7
			}
		})
	})
}
