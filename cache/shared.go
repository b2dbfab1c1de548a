package cache

import (
	"context"
	"time"
)

// Shared is a tier of a [Cache] that several processes share, so that the
// replicas of one deployment load each key once between them and forget it
// together. redisstore implements it on Redis; package cache knows
// only this interface.
//
// A Cache with a Shared tier still answers hits from its own memory: the
// tier is consulted only on a local miss, and an entry read from it is kept
// locally until the expiry its writer gave it, so that every process serves
// the same value until the same instant. What keeps the local copies
// correct in between is invalidation pushed by the tier ([Shared.Subscribe]),
// never polling.
//
// The tier is an accelerator, not a dependency: when it cannot be reached,
// [Shared.Fetch] runs the fill itself, and the processes work on their own
// until it is back. Implementations must be safe for concurrent use.
type Shared interface {
	// Fetch returns the entry stored under key by any process. When there
	// is none, it calls fill, at most once at a time for key across all
	// the processes (the others wait for its result, bounded by ctx, and
	// fill themselves if the process filling goes away), stores the entry
	// fill returns until its Expires, and returns it with filled true. An
	// entry whose Expires has passed is never returned from the tier.
	//
	// When the tier cannot be reached (or holds an entry that fails its
	// integrity check), Fetch calls fill itself and returns its result:
	// the tier is never the reason a Fetch fails. An error from fill is
	// returned as is and stores nothing.
	Fetch(ctx context.Context, key string, fill func(context.Context) (SharedEntry, error)) (e SharedEntry, filled bool, err error)

	// Invalidate removes the entries under keys from the tier, stops fills
	// of them running anywhere from storing, and tells every process
	// subscribed (this one included) to drop its local copies. It returns
	// an error when the tier could not be reached; the tier must then
	// not serve what it may still hold until the invalidation has reached
	// it (redisstore works locally until it can replay it), and the other
	// processes keep their copies until then, at most until these expire.
	Invalidate(ctx context.Context, keys ...string) error

	// InvalidateAll is Invalidate for every key.
	InvalidateAll(ctx context.Context) error

	// Subscribe calls fn with the keys any process invalidates, nil
	// meaning all of them: after InvalidateAll, and after a lost connection
	// to the tier, during which invalidations may have been missed. fn
	// runs on the tier's own goroutine and must return quickly. The
	// returned function ends the subscription.
	Subscribe(fn func(keys []string)) (cancel func())
}

// SharedEntry is an entry of a [Shared] tier: an encoded value and the
// instant it stops being fresh, chosen by the process that loaded it.
type SharedEntry struct {
	Data    []byte
	Expires time.Time
}

// Codec turns a Cache's values into bytes for a [Shared] tier and back.
// Decode must reject what Encode could not have produced: the tier checks
// that an entry was written by a holder of its key, and Decode that it
// makes sense.
type Codec[V any] interface {
	Encode(V) ([]byte, error)
	Decode([]byte) (V, error)
}
