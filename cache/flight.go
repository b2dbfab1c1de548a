package cache

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Flight coalesces work shared by concurrent callers: [Flight.Do] runs fn
// once per key at a time, and every caller asking for that key meanwhile
// gets its result. The zero Flight is ready to use; a Flight must not be
// copied after first use. It is safe for concurrent use.
//
// The shared call runs on [context.WithoutCancel] of the first caller's
// context, with its own timeout, so the first caller giving up does not fail
// the others; each caller still stops waiting as soon as its own context is
// done. [Cache], the middleware's JWKS refresh and the Graph source's
// tenant-wide fetches all coalesce through it.
type Flight[V any] struct {
	// group is replaced by ForgetAll, so that callers arriving after it do
	// not join calls started before it.
	group atomic.Pointer[singleflight.Group]
}

func (f *Flight[V]) current() *singleflight.Group {
	if g := f.group.Load(); g != nil {
		return g
	}
	f.group.CompareAndSwap(nil, new(singleflight.Group))
	return f.group.Load()
}

// Do returns the result of fn for key, from a call it starts or joins. fn
// gets the first caller's context detached from its cancellation and
// bounded by timeout (no bound of its own when timeout is 0 or less: fn
// must then bound itself). Do returns ctx.Err() without starting anything
// when ctx is already done, and as soon as ctx is done while it waits; the
// call goes on for the other callers. fn's error is returned unchanged to
// every caller of that call. A panic in fn is not recovered (singleflight
// re-panics it): fn recovers what it can panic on.
func (f *Flight[V]) Do(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) (V, error)) (V, error) {
	var zero V
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	ch := f.current().DoChan(key, func() (any, error) {
		fctx := context.WithoutCancel(ctx)
		if timeout > 0 {
			var cancel context.CancelFunc
			fctx, cancel = context.WithTimeout(fctx, timeout)
			defer cancel()
		}
		return fn(fctx)
	})
	select {
	case <-ctx.Done():
		return zero, ctx.Err()
	case r := <-ch:
		v, _ := r.Val.(V)
		return v, r.Err
	}
}

// Forget makes callers of key that arrive after it start a new call instead
// of joining the one running, which still answers its own callers.
func (f *Flight[V]) Forget(key string) {
	f.current().Forget(key)
}

// ForgetAll is [Flight.Forget] for every key.
func (f *Flight[V]) ForgetAll() {
	f.group.Store(new(singleflight.Group))
}
