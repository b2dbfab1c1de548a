package redisstore

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// pause sets KEYS[1] to expire in ARGV[1] milliseconds unless it already
// expires later: a short Retry-After never cuts a longer one short.
var pause = redis.NewScript(`
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 0
`)

// Take implements [graphcheck.TenantLimits] with go-redis/redis_rate's
// GCRA limiter: one Lua script, atomic in Redis, on Redis's clock.
func (s *Store) Take(ctx context.Context, tenantID, bucket string, perSecond float64, burst int) (time.Duration, error) {
	if !(perSecond > 0) || math.IsInf(perSecond, 0) || burst < 1 {
		return 0, fmt.Errorf("redisstore: Take: invalid limit (%g/s, burst %d)", perSecond, burst)
	}
	limit := redis_rate.Limit{Rate: 1, Burst: burst, Period: time.Duration(float64(time.Second) / perSecond)}
	var wait time.Duration
	err := s.call(ctx, "take", func(ctx context.Context) error {
		res, err := s.limiter.Allow(ctx, s.bucketKey(tenantID, bucket), limit)
		if err != nil {
			return err
		}
		if res.Allowed == 0 {
			wait = max(res.RetryAfter, time.Millisecond)
		}
		return nil
	})
	return wait, err
}

// Pause implements [graphcheck.TenantLimits].
func (s *Store) Pause(ctx context.Context, tenantID string, d time.Duration) error {
	ms := d.Milliseconds()
	if ms <= 0 {
		return nil
	}
	return s.call(ctx, "pause", func(ctx context.Context) error {
		return pause.Run(ctx, s.client, []string{s.pauseKey(tenantID)}, strconv.FormatInt(ms, 10)).Err()
	})
}

// Paused implements [graphcheck.TenantLimits].
func (s *Store) Paused(ctx context.Context, tenantID string) (time.Duration, error) {
	var left time.Duration
	err := s.call(ctx, "paused", func(ctx context.Context) error {
		d, err := s.client.PTTL(ctx, s.pauseKey(tenantID)).Result()
		left = max(d, 0) // -2 (no key) and -1 (no expiry) come back as negative durations
		return err
	})
	return left, err
}
