package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/cache"
)

// claim returns the entry under KEYS[1] if there is one, and otherwise
// tries to take the lease KEYS[2] for ARGV[1] (a random token) for ARGV[2]
// milliseconds: {1, entry}, {2} (leased to us) or {0} (leased to another).
var claim = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
`)

// fill stores ARGV[2] under KEYS[1] for ARGV[3] milliseconds and releases
// the lease KEYS[2], only while the lease is still ARGV[1]'s: a purge that
// deleted the lease (or a lease that expired and went to another replica)
// keeps a load started before it from storing. Returns 1 if stored.
var fill = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
`)

// renew extends the lease KEYS[1] to ARGV[2] milliseconds while it is
// ARGV[1]'s; release (ARGV[2] = 0) deletes it.
var renew = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
`)

// drop deletes the entry KEYS[1] if it still holds ARGV[1] (an entry that
// failed verification or had expired), so that the next claim can lease.
var drop = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Polling bounds of a replica waiting for another's load.
const (
	firstPoll = 2 * time.Millisecond
	maxPoll   = 25 * time.Millisecond
)

// Fetch implements [cache.Shared]: one load per key for the whole fleet.
// A local miss runs one script that returns the entry or takes the key's
// lease; the replica holding the lease loads (renewing the lease as it
// goes) and stores the entry with a compare-and-set on its lease, while the
// others poll for the entry (2 ms, doubling to 25 ms) until it appears, the
// lease frees (they claim it), or ctx ends. Whatever Redis does, a Fetch
// falls back to calling load itself.
func (s *Store) Fetch(ctx context.Context, key string, load func(context.Context) (cache.SharedEntry, error)) (cache.SharedEntry, bool, error) {
	if s.unflushed.Load() {
		return s.loadLocally(ctx, load) // a purge is still to be replayed
	}
	epoch := s.epoch.Load()
	ek, lk := s.entryKey(key, epoch), s.leaseKey(key, epoch)
	token := newToken()
	leaseMS := strconv.FormatInt(s.cfg.LeaseTTL.Milliseconds(), 10)
	poll := firstPoll
	dropped := false
	for {
		var res []any
		err := s.call(ctx, "claim", func(ctx context.Context) (err error) {
			res, err = claim.Run(ctx, s.client, []string{ek, lk}, token, leaseMS).Slice()
			return err
		})
		if err != nil || len(res) == 0 {
			return s.loadLocally(ctx, load)
		}
		switch res[0] {
		case int64(1):
			raw, _ := res[1].(string)
			if e, ok := open(s.keys, ek, []byte(raw)); ok && s.cfg.Now().Before(e.Expires) {
				return e, false, nil
			} else if !ok {
				s.reject(key)
			}
			// Expired (a writer's clock ahead of ours) or forged: remove it
			// once so that this replica can lease and load; if it comes
			// back, load here and leave Redis alone.
			if dropped {
				return s.loadLocally(ctx, load)
			}
			dropped = true
			if s.call(ctx, "drop", func(ctx context.Context) error {
				return drop.Run(ctx, s.client, []string{ek}, raw).Err()
			}) != nil {
				return s.loadLocally(ctx, load)
			}
			continue
		case int64(2):
			return s.loadAndStore(ctx, ek, lk, token, load)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return cache.SharedEntry{}, false, ctx.Err()
		case <-t.C:
		}
		poll = min(poll*2, maxPoll)
	}
}

// loadAndStore loads under the lease lk and stores the result under ek.
func (s *Store) loadAndStore(ctx context.Context, ek, lk, token string, load func(context.Context) (cache.SharedEntry, error)) (cache.SharedEntry, bool, error) {
	stop := s.keepLease(ctx, lk, token)
	e, err := load(ctx)
	stop()
	if err != nil {
		s.release(ctx, "release", lk, token)
		return e, true, err
	}
	ttl := e.Expires.Sub(s.cfg.Now())
	if ttl.Milliseconds() <= 0 {
		s.release(ctx, "release", lk, token)
		return e, true, nil
	}
	envelope := seal(s.cfg.Key, ek, e)
	_ = s.call(ctx, "store", func(ctx context.Context) error {
		return fill.Run(ctx, s.client, []string{ek, lk}, token, envelope, ttl.Milliseconds()).Err()
	})
	return e, true, nil
}

// release deletes the lease lk while it is still token's (the renew
// script with 0 milliseconds), counting a failure under op.
func (s *Store) release(ctx context.Context, op, lk, token string) {
	_ = s.call(ctx, op, func(ctx context.Context) error {
		return renew.Run(ctx, s.client, []string{lk}, token, "0").Err()
	})
}

// keepLease renews the lease every LeaseTTL/3 until the returned function
// is called.
func (s *Store) keepLease(ctx context.Context, lk, token string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	ms := strconv.FormatInt(s.cfg.LeaseTTL.Milliseconds(), 10)
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = s.call(ctx, "renew", func(ctx context.Context) error {
					return renew.Run(ctx, s.client, []string{lk}, token, ms).Err()
				})
			}
		}
	}()
	return func() { cancel(); <-done }
}

// loadLocally is the fallback of every failure: the replica loads on its
// own, as it would without Redis.
func (s *Store) loadLocally(ctx context.Context, load func(context.Context) (cache.SharedEntry, error)) (cache.SharedEntry, bool, error) {
	e, err := load(ctx)
	return e, true, err
}

// reject counts an entry that failed verification, and logs it at most
// once a minute: someone without the key wrote to Redis, or the replicas
// disagree on the key.
func (s *Store) reject(key string) {
	s.rejected.Add(context.Background(), 1)
	s.rejectLog.Do(func() {
		s.cfg.Logger.Warn("redisstore: ignored an entry that failed HMAC verification (written without the fleet's key, or for another key); check Config.Key on every replica and who can write to Redis",
			"key", key)
	})
}

// Invalidate implements [cache.Shared]: it deletes the entries and leases
// of keys (so that loads running anywhere do not store), then publishes
// them to every replica. It reads the fleet's epoch first and deletes at
// it as well as at this Store's, which may lag behind an InvalidateAll
// whose message has not arrived yet.
func (s *Store) Invalidate(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if strings.ContainsAny(k, "\n") {
			return fmt.Errorf("redisstore: key %q contains a newline", k)
		}
	}
	return s.invalidate(ctx, "invalidate", func(ctx context.Context) error {
		local := s.epoch.Load()
		if err := s.readEpoch(ctx); err != nil {
			return err
		}
		epochs := []uint64{s.epoch.Load()}
		if local != epochs[0] {
			epochs = append(epochs, local)
		}
		pipe := s.client.Pipeline()
		for _, k := range keys {
			for _, e := range epochs {
				pipe.Del(ctx, s.entryKey(k, e))
				pipe.Del(ctx, s.leaseKey(k, e))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		return s.client.Publish(ctx, s.channel(), "k\n"+strings.Join(keys, "\n")).Err()
	})
}

// InvalidateAll implements [cache.Shared]: it moves the fleet to a new
// epoch, so that every entry written before becomes unreachable (Redis
// expires them), and publishes the epoch.
func (s *Store) InvalidateAll(ctx context.Context) error {
	return s.invalidate(ctx, "invalidate_all", s.bumpEpoch)
}

// bumpEpoch moves the fleet to a new epoch and publishes it.
func (s *Store) bumpEpoch(ctx context.Context) error {
	n, err := s.client.Incr(ctx, s.epochKey()).Uint64()
	if err != nil {
		return err
	}
	s.raiseEpoch(n)
	return s.client.Publish(ctx, s.channel(), "a "+strconv.FormatUint(n, 10)).Err()
}

// invalidate is call without the shortcut for a Redis known to be down: a
// purge is rare and worth one bounded attempt, which also tells sooner
// that Redis is back.
func (s *Store) invalidate(ctx context.Context, op string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		// Until it is replayed, the entries the invalidation should have
		// removed must not be read: set before Redis is marked down, so
		// that no probe can mark it up again without replaying.
		s.unflushed.Store(true)
		s.failed(op, err)
		s.cfg.Logger.Warn("redisstore: an invalidation did not reach Redis; this replica works alone until Redis answers, then replays it as a fleet-wide invalidation (other replicas keep their copies until then, at most until these expire)",
			"op", op, "error", err.Error())
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return nil
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
