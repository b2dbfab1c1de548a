package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// maxDocumentBytes caps discovery and JWKS responses.
const maxDocumentBytes = 1 << 20

// keySet is an oidc.KeySet over one jwks_uri with a bounded refresh policy.
//
// go-oidc's RemoteKeySet refetches the JWKS on every unknown kid. A stream of
// tokens with random kids would thus become a stream of JWKS fetches; here a
// fetch happens at most once per cooldown, concurrent callers share one
// fetch, and a key set older than maxAge is refreshed so that a key Entra
// withdraws stops verifying (and stops backing cached tokens).
//
// Only a token whose kid is unknown waits for a fetch. An aged key set is
// refreshed in the background (stale-while-revalidate): the request that
// finds it aged is answered from it, so a JWKS endpoint that hangs costs a
// token already verified nothing, rather than HTTPTimeout once per cooldown.
//
// Reads are lock-free: the current keys are an immutable snapshot behind an
// atomic pointer.
type keySet struct {
	url      string
	client   *http.Client
	now      func() time.Time
	cooldown time.Duration
	maxAge   time.Duration
	timeout  time.Duration
	algs     []jose.SignatureAlgorithm
	logger   *slog.Logger

	snap   atomic.Pointer[keySnapshot]
	flight singleflight.Group
	// lastTry is when a fetch was last tried (nil: never since the first).
	// It is written only inside flight, which runs one fetch at a time, and
	// read without a lock by the aged-set check on the warm path.
	lastTry atomic.Pointer[time.Time]
	// revalidating is set while a background refresh runs, so a stream of
	// requests on an aged set starts one goroutine, not one per request.
	revalidating atomic.Bool
	// background counts background refreshes, for tests to wait on.
	background sync.WaitGroup
	fetches    atomic.Int64
}

type keySnapshot struct {
	keys    map[string]jose.JSONWebKey
	fetched time.Time
}

// errCooldown reports that a refetch was skipped because one happened recently.
var errCooldown = errors.New("middleware: key set refetched recently")

// verifyOutcome carries the signature check's result out of go-oidc, which
// flattens KeySet errors with %v. The keySet fills it in; the verifier reads
// it to classify the failure with errors.Is.
type verifyOutcome struct {
	kid string
	err error
}

type outcomeKey struct{}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	out, _ := ctx.Value(outcomeKey{}).(*verifyOutcome)
	payload, kid, err := k.verify(ctx, raw)
	if out != nil {
		out.kid, out.err = kid, err
	}
	return payload, err
}

func (k *keySet) verify(ctx context.Context, raw string) ([]byte, string, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, "", fmt.Errorf("%w: %d signatures", ErrTokenMalformed, len(jws.Signatures))
	}
	h := jws.Signatures[0].Header
	if h.KeyID == "" {
		return nil, "", fmt.Errorf("%w: no kid in header", ErrTokenMalformed)
	}
	key, err := k.key(ctx, h.KeyID)
	if err != nil {
		return nil, "", err
	}
	if key.Use != "" && key.Use != "sig" {
		return nil, "", fmt.Errorf("%w: key is for %q, not signatures", ErrTokenBadSignature, key.Use)
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return nil, "", fmt.Errorf("%w: key is for %s, token uses %s", ErrTokenBadSignature, key.Algorithm, h.Algorithm)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrTokenBadSignature, err)
	}
	return payload, h.KeyID, nil
}

// key returns the key with the given ID, refetching the set (at most once per
// cooldown) when the ID is unknown. A known key is answered at once, even
// from an aged set, whose refresh it starts in the background.
func (k *keySet) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	if s := k.snap.Load(); s != nil {
		if key, ok := s.keys[kid]; ok {
			if now := k.now(); now.Sub(s.fetched) > k.maxAge {
				k.revalidate(ctx, now)
			}
			return key, nil
		}
	}
	err := k.refresh(ctx)
	if key, ok := k.lookup(kid); ok {
		return key, nil
	}
	switch {
	case err == nil, errors.Is(err, errCooldown):
		return jose.JSONWebKey{}, fmt.Errorf("%w: signing key not in the key set", ErrTokenBadSignature)
	default:
		return jose.JSONWebKey{}, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
}

func (k *keySet) lookup(kid string) (jose.JSONWebKey, bool) {
	s := k.snap.Load()
	if s == nil {
		return jose.JSONWebKey{}, false
	}
	key, ok := s.keys[kid]
	return key, ok
}

// has reports whether kid is still published at now (the caller's clock
// reading, sparing a second one on the warm path). It backs the
// verified-token cache: a cached token stops being accepted once its signing
// key leaves the JWKS. It never waits for the network: a set older than
// maxAge is refreshed in the background and has answers from the current
// one, so a withdrawn key stops cached tokens once that refresh has
// installed the new set.
func (k *keySet) has(ctx context.Context, kid string, now time.Time) bool {
	s := k.snap.Load()
	if s == nil {
		return false
	}
	if now.Sub(s.fetched) > k.maxAge {
		k.revalidate(ctx, now)
	}
	_, ok := s.keys[kid]
	return ok
}

// revalidate starts a background refresh of an aged set unless one is
// running or a fetch was tried within the cooldown. The refresh runs on ctx
// detached from its cancellation (tryFetch adds the timeout) and shares the
// flight with unknown-kid refetches, so those wait for it rather than start
// another fetch. A failure is logged once and keeps the previous keys; the
// next attempt comes after the cooldown.
func (k *keySet) revalidate(ctx context.Context, now time.Time) {
	if k.coolingDown(now) || k.revalidating.Load() || !k.revalidating.CompareAndSwap(false, true) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	k.background.Go(func() {
		defer k.revalidating.Store(false)
		_, _, _ = k.flight.Do("", func() (any, error) {
			err := k.tryFetch(ctx)
			if err != nil && !errors.Is(err, errCooldown) {
				k.logger.WarnContext(ctx, "pimguard: JWKS refresh failed; keeping the previous keys", "jwks_uri", k.url, "err", err)
			}
			return nil, err
		})
	})
}

// refresh fetches the key set unless a fetch was tried within the cooldown,
// waiting for the fetch or for ctx. Concurrent callers, and a background
// refresh in progress, share one fetch.
func (k *keySet) refresh(ctx context.Context) error {
	ch := k.flight.DoChan("", func() (any, error) { return nil, k.tryFetch(ctx) })
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// coolingDown reports whether a fetch was tried within the cooldown before now.
func (k *keySet) coolingDown(now time.Time) bool {
	last := k.lastTry.Load()
	return last != nil && now.Sub(*last) < k.cooldown
}

// tryFetch fetches the key set unless a fetch was tried within the cooldown.
// It runs inside k.flight (one at a time), on a context detached from any
// caller's cancellation, with its own timeout.
func (k *keySet) tryFetch(ctx context.Context) error {
	now := k.now()
	if k.coolingDown(now) {
		return errCooldown
	}
	k.lastTry.Store(&now)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.timeout)
	defer cancel()
	return k.fetch(fctx)
}

// fetch downloads and installs the key set. Keys that do not parse (unknown
// key types, private keys) are skipped, not fatal: one odd key must not make
// every token unverifiable.
func (k *keySet) fetch(ctx context.Context) error {
	k.fetches.Add(1)
	body, err := getDocument(ctx, k.client, k.url)
	if err != nil {
		return fmt.Errorf("fetching JWKS: %w", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("decoding JWKS from %s: %w", k.url, err)
	}
	keys := make(map[string]jose.JSONWebKey, len(set.Keys))
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil || !key.IsPublic() || key.KeyID == "" {
			continue
		}
		keys[key.KeyID] = key
	}
	if len(keys) == 0 {
		return fmt.Errorf("JWKS at %s holds no usable public keys", k.url)
	}
	k.snap.Store(&keySnapshot{keys: keys, fetched: k.now()})
	return nil
}

// getDocument GETs a JSON document, refusing non-200 answers and bodies over
// maxDocumentBytes.
func getDocument(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("GET %s: document larger than %d bytes", url, maxDocumentBytes)
	}
	return body, nil
}
