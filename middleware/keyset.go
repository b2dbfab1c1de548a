package middleware

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pimguard/pimguard/cache"
)

// maxDocumentBytes caps discovery and JWKS responses.
const maxDocumentBytes = 1 << 20

// keySet holds the keys of one jwks_uri, with a bounded refresh policy, and
// verifies signatures with them ([keySet.verify]).
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
	logger   *slog.Logger

	snap   atomic.Pointer[keySnapshot]
	flight cache.Flight[struct{}] // JWKS fetches, one at a time
	// lastTry is when a fetch was last tried (nil: never since the first).
	// It is written only inside flight, which runs one fetch at a time, and
	// read without a lock by the aged-set check on the warm path.
	lastTry atomic.Pointer[time.Time]
	// revalidating is set while a background refresh runs, so a stream of
	// requests on an aged set starts one goroutine, not one per request.
	revalidating atomic.Bool
	// background counts background refreshes, for tests and
	// [Authenticator.Close] to wait on. bgMu orders starting one against
	// closed, so that no refresh starts once Close waits.
	background sync.WaitGroup
	bgMu       sync.Mutex
	closed     atomic.Bool // set by Authenticator.Close: start no more background refreshes

	// fetched counts each fetch by outcome (the Authenticator's metrics);
	// nil counts nothing. failure is the last failed fetch, nil once a
	// fetch succeeds after it, for Health.
	fetched func(ctx context.Context, doc fetchDoc, err error)
	failure atomic.Pointer[fetchFailure]
}

type keySnapshot struct {
	keys    map[string]jose.JSONWebKey
	fetched time.Time
}

// errCooldown reports that a refetch was skipped because one happened recently.
var errCooldown = errors.New("middleware: key set refetched recently")

// verify checks sig, the signature of signingInput under the JOSE header
// h, with the key h.kid names in this set (see [keySet.key]): the key must be
// for signatures, for h.alg when it names an algorithm, and of the type h.alg
// needs. h.alg is one of the configured algorithms ([decodeHeader]).
func (k *keySet) verify(ctx context.Context, h jwsHeader, signingInput string, sig []byte) error {
	key, err := k.key(ctx, h.kid)
	if err != nil {
		return err
	}
	if key.Use != "" && key.Use != "sig" {
		return fmt.Errorf("%w: key is for %q, not signatures", ErrTokenBadSignature, key.Use)
	}
	if key.Algorithm != "" && key.Algorithm != h.alg {
		return fmt.Errorf("%w: key is for %s, token uses %s", ErrTokenBadSignature, key.Algorithm, h.alg)
	}
	if err := verifySignature(h.alg, key.Key, stringBytes(signingInput), sig); err != nil {
		return fmt.Errorf("%w: %v", ErrTokenBadSignature, err)
	}
	return nil
}

// verifySignature checks a JWS signature with the standard library, as RFC
// 7518 §3 defines each algorithm: RS* RSASSA-PKCS1-v1_5, PS* RSASSA-PSS with
// a salt as long as the hash, ES* ECDSA with r and s as fixed-size big-endian
// integers on the curve the algorithm names, EdDSA Ed25519. Any other
// algorithm, and a key of another type than the algorithm needs, fail.
func verifySignature(alg string, key any, signed, sig []byte) error {
	var hash crypto.Hash
	switch alg {
	case "RS256", "PS256", "ES256":
		hash = crypto.SHA256
	case "RS384", "PS384", "ES384":
		hash = crypto.SHA384
	case "RS512", "PS512", "ES512":
		hash = crypto.SHA512
	case "EdDSA":
		pub, ok := key.(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%s needs an Ed25519 key, not %T", alg, key)
		}
		if !ed25519.Verify(pub, signed, sig) {
			return errors.New("ed25519 signature does not verify")
		}
		return nil
	default:
		return fmt.Errorf("algorithm %.20q is not supported", alg)
	}
	var buf [sha512.Size]byte
	digest := digestInto(&buf, hash, signed)
	switch alg[0] {
	case 'R':
		pub, ok := key.(*rsa.PublicKey)
		if !ok || pub == nil {
			return fmt.Errorf("%s needs an RSA key, not %T", alg, key)
		}
		return rsa.VerifyPKCS1v15(pub, hash, digest, sig)
	case 'P':
		pub, ok := key.(*rsa.PublicKey)
		if !ok || pub == nil {
			return fmt.Errorf("%s needs an RSA key, not %T", alg, key)
		}
		return rsa.VerifyPSS(pub, hash, slices.Clone(digest), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	default: // ES*
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok || pub == nil {
			return fmt.Errorf("%s needs an EC key, not %T", alg, key)
		}
		curve := elliptic.P256()
		switch hash {
		case crypto.SHA384:
			curve = elliptic.P384()
		case crypto.SHA512:
			curve = elliptic.P521()
		}
		if pub.Curve != curve {
			return fmt.Errorf("%s needs a key on %s", alg, curve.Params().Name)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("%s signature of %d bytes, want %d", alg, len(sig), 2*size)
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, slices.Clone(digest), r, s) {
			return errors.New("ecdsa signature does not verify")
		}
		return nil
	}
}

// digestInto hashes b with one of SHA-256, SHA-384 and SHA-512 into buf and
// returns the digest, a slice of buf: on the stack for RS* (crypto/rsa keeps
// no reference to it); PS* and ES* pass a copy.
func digestInto(buf *[sha512.Size]byte, hash crypto.Hash, b []byte) []byte {
	switch hash {
	case crypto.SHA384:
		d := sha512.Sum384(b)
		return buf[:copy(buf[:], d[:])]
	case crypto.SHA512:
		*buf = sha512.Sum512(b)
		return buf[:]
	default:
		d := sha256.Sum256(b)
		return buf[:copy(buf[:], d[:])]
	}
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
// detached from its cancellation (the flight adds the timeout) and shares the
// flight with unknown-kid refetches, so those wait for it rather than start
// another fetch. A failure is logged once and keeps the previous keys; the
// next attempt comes after the cooldown.
func (k *keySet) revalidate(ctx context.Context, now time.Time) {
	if k.coolingDown(now) || k.revalidating.Load() || !k.revalidating.CompareAndSwap(false, true) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	k.bgMu.Lock()
	defer k.bgMu.Unlock()
	if k.closed.Load() {
		k.revalidating.Store(false)
		return
	}
	k.background.Go(func() {
		defer k.revalidating.Store(false)
		_, _ = k.flight.Do(ctx, "", k.timeout, func(ctx context.Context) (struct{}, error) {
			err := k.tryFetch(ctx)
			if err != nil && !errors.Is(err, errCooldown) {
				k.logger.WarnContext(ctx, "pimguard: JWKS refresh failed; keeping the previous keys", "jwks_uri", k.url, "err", err)
			}
			return struct{}{}, err
		})
	})
}

// refresh fetches the key set unless a fetch was tried within the cooldown,
// waiting for the fetch or for ctx. Concurrent callers, and a background
// refresh in progress, share one fetch.
func (k *keySet) refresh(ctx context.Context) error {
	_, err := k.flight.Do(ctx, "", k.timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, k.tryFetch(ctx) })
	return err
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
	return k.fetch(ctx)
}

// fetch downloads and installs the key set, and counts and records the
// outcome. Keys that do not parse (unknown key types, private keys) are
// skipped, not fatal: one odd key must not make every token unverifiable.
func (k *keySet) fetch(ctx context.Context) error {
	err := k.download(ctx)
	if k.fetched != nil {
		k.fetched(ctx, docJWKS, err)
	}
	if err != nil {
		k.failure.Store(&fetchFailure{at: k.now(), class: fetchClass(err)})
	} else if k.failure.Load() != nil {
		k.failure.Store(nil)
	}
	return err
}

func (k *keySet) download(ctx context.Context) error {
	body, err := getDocument(ctx, k.client, k.url)
	if err != nil {
		return fmt.Errorf("fetching JWKS: %w", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("%w: decoding JWKS from %s: %w", errInvalidDocument, k.url, err)
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
		return fmt.Errorf("%w: JWKS at %s holds no usable public keys", errNoUsableKeys, k.url)
	}
	k.snap.Store(&keySnapshot{keys: keys, fetched: k.now()})
	return nil
}

// Errors of discovery and key-set fetches that [fetchClass] tells apart.
var (
	errInvalidDocument = errors.New("invalid document")
	errNoUsableKeys    = errors.New("no usable keys")
)

// httpStatusError is a fetch answered with another status than 200.
type httpStatusError struct {
	url    string
	status int
}

func (e *httpStatusError) Error() string { return fmt.Sprintf("GET %s: HTTP %d", e.url, e.status) }

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
		return nil, &httpStatusError{url: url, status: resp.StatusCode}
	}
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("%w: GET %s: document larger than %d bytes", errInvalidDocument, url, maxDocumentBytes)
	}
	return body, nil
}
