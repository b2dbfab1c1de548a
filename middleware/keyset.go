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
// refetch happens at most once per cooldown, concurrent callers share one
// fetch, and a key set older than maxAge is refreshed so that a key Entra
// withdraws stops verifying (and stops backing cached tokens).
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

	snap    atomic.Pointer[keySnapshot]
	flight  singleflight.Group
	mu      sync.Mutex // guards lastTry
	lastTry time.Time
	fetches atomic.Int64
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
// cooldown) when the ID is unknown.
func (k *keySet) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	if key, ok := k.lookup(kid); ok {
		return key, nil
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
// reading, sparing a second one on the warm path), refreshing a key set
// older than maxAge first. It backs the verified-token cache: a cached
// token stops being accepted once its signing key leaves the JWKS.
func (k *keySet) has(ctx context.Context, kid string, now time.Time) bool {
	s := k.snap.Load()
	if s == nil {
		return false
	}
	if now.Sub(s.fetched) > k.maxAge {
		if err := k.refresh(ctx); err != nil && !errors.Is(err, errCooldown) {
			k.logger.WarnContext(ctx, "pimguard: JWKS refresh failed; keeping the previous keys", "jwks_uri", k.url, "err", err)
		}
		s = k.snap.Load()
	}
	_, ok := s.keys[kid]
	return ok
}

// refresh fetches the key set unless a fetch was tried within the cooldown.
// Concurrent callers share one fetch, which runs on a context detached from
// any caller's cancellation, with its own timeout.
func (k *keySet) refresh(ctx context.Context) error {
	ch := k.flight.DoChan("", func() (any, error) {
		k.mu.Lock()
		now := k.now()
		if !k.lastTry.IsZero() && now.Sub(k.lastTry) < k.cooldown {
			k.mu.Unlock()
			return nil, errCooldown
		}
		k.lastTry = now
		k.mu.Unlock()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.timeout)
		defer cancel()
		return nil, k.fetch(fctx)
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
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
