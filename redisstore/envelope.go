package redisstore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/pimguard/pimguard/cache"
)

// An entry is stored in Redis as an envelope:
//
//	version (1 byte) | expires (8 bytes, Unix nanoseconds, big endian) | data | MAC (32 bytes)
//
// where MAC is HMAC-SHA-256, under the fleet's key, of the Redis key the
// envelope is stored under, a zero byte, and everything before the MAC. An
// envelope therefore proves that a holder of the key wrote these bytes for
// this key: a value forged without the key, or copied from another
// principal's key, fails verification. A decision is never made on an
// envelope that fails.
const (
	envelopeVersion = 1
	headerSize      = 1 + 8
	macSize         = sha256.Size
)

// seal returns the envelope of e for redisKey, MACed with key.
func seal(key []byte, redisKey string, e cache.SharedEntry) []byte {
	b := make([]byte, headerSize, headerSize+len(e.Data)+macSize)
	b[0] = envelopeVersion
	binary.BigEndian.PutUint64(b[1:headerSize], uint64(e.Expires.UnixNano()))
	b = append(b, e.Data...)
	return append(b, mac(key, redisKey, b)...)
}

// open verifies an envelope read from redisKey against each key in turn
// (the current one first, then those being rotated out) and returns its
// entry. ok is false for anything that is not an intact envelope made with
// one of keys for redisKey.
func open(keys [][]byte, redisKey string, b []byte) (e cache.SharedEntry, ok bool) {
	if len(b) < headerSize+macSize || b[0] != envelopeVersion {
		return e, false
	}
	body, sum := b[:len(b)-macSize], b[len(b)-macSize:]
	for _, k := range keys {
		if hmac.Equal(sum, mac(k, redisKey, body)) {
			ns := int64(binary.BigEndian.Uint64(body[1:headerSize]))
			return cache.SharedEntry{Data: body[headerSize:], Expires: time.Unix(0, ns)}, true
		}
	}
	return e, false
}

func mac(key []byte, redisKey string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(redisKey))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}
