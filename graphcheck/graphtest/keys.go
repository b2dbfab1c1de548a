package graphtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"

	"github.com/go-jose/go-jose/v4"
)

// keyRing holds the published RSA keys, newest last; the newest signs.
// Callers hold Server.mu.
type keyRing struct {
	keys []*rsaKey
}

type rsaKey struct {
	kid  string
	priv *rsa.PrivateKey
}

func (k *keyRing) rotate() (string, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	key := &rsaKey{kid: hex.EncodeToString(id[:]), priv: priv}
	k.keys = append(k.keys, key)
	return key.kid, nil
}

func (k *keyRing) signing() *rsaKey { return k.keys[len(k.keys)-1] }

func (k *keyRing) retire(kid string) bool {
	for i, key := range k.keys {
		if key.kid == kid && len(k.keys) > 1 {
			k.keys = append(k.keys[:i], k.keys[i+1:]...)
			return true
		}
	}
	return false
}

func (k *keyRing) publicSet() jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{}
	for _, key := range k.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:   &key.priv.PublicKey,
			KeyID: key.kid,
			Use:   "sig",
		})
	}
	return set
}

// RotateSigningKey generates a new RSA key, publishes it in the JWKS and signs
// every later token with it. The previous keys stay published, as in Entra's
// rollover, until [Server.RetireKey] removes them. It returns the new key ID.
func (s *Server) RotateSigningKey() (kid string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys.rotate()
}

// RetireKey removes a key from the JWKS. Tokens it signed no longer verify
// once a verifier refetches the key set. The signing key itself cannot be
// retired while it is the only key; RetireKey reports whether it removed one.
func (s *Server) RetireKey(kid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys.retire(kid)
}

// SigningKey returns the current signing key and its key ID, for tests that
// craft unusual tokens by hand (see [Server.Sign]).
func (s *Server) SigningKey() (kid string, key *rsa.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys.signing()
	return k.kid, k.priv
}

// KeyIDs returns the key IDs the JWKS currently publishes.
func (s *Server) KeyIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, k := range s.keys.keys {
		ids = append(ids, k.kid)
	}
	return ids
}
