package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/redisstore"
)

// A Sentinel deployment goes through Config.Client: go-redis's failover
// client asks the Sentinel for the master and follows it.
func TestSentinelThroughClient(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, "pimguard-test", master)
	client := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "pimguard-test", SentinelAddrs: []string{sentinel.Addr()}})
	defer client.Close()
	s, err := redisstore.New(redisstore.Config{Client: client, Key: testKey, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Connected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !s.Connected() {
		t.Fatal("not connected through the Sentinel")
	}
	ctx := context.Background()
	if _, filled, err := s.Fetch(ctx, "k", func(context.Context) (cache.SharedEntry, error) {
		return cache.SharedEntry{Data: []byte("v"), Expires: time.Now().Add(time.Minute)}, nil
	}); err != nil || !filled {
		t.Fatalf("Fetch: filled %v, err %v", filled, err)
	}
	direct := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer direct.Close()
	if n, err := direct.Exists(ctx, "pimguard:v1:entry:{k}:0").Result(); err != nil || n != 1 {
		t.Fatalf("the entry is not on the master the Sentinel named (exists=%d, err=%v)", n, err)
	}
}
