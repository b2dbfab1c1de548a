package redisstore

import (
	"bytes"
	"testing"
	"time"

	"github.com/pimguard/pimguard/cache"
)

func TestEnvelope(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	old := bytes.Repeat([]byte{2}, 32)
	e := cache.SharedEntry{Data: []byte(`{"state":{}}`), Expires: time.Unix(1800000000, 123456789)}
	const rk = "pimguard:v1:entry:{t/o/u/-}:0"
	good := seal(key, rk, e)

	tamper := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	for _, tc := range []struct {
		name     string
		keys     [][]byte
		redisKey string
		b        []byte
		ok       bool
	}{
		{"intact", [][]byte{key}, rk, good, true},
		{"verified by a previous key", [][]byte{old, key}, rk, good, true},
		{"other key", [][]byte{old}, rk, good, false},
		{"copied to another principal's key", [][]byte{key}, "pimguard:v1:entry:{t/x/u/-}:0", good, false},
		{"copied to another kind", [][]byte{key}, "pimguard:v1:entry:{t/o/sp/-}:0", good, false},
		{"version byte", [][]byte{key}, rk, tamper(0), false},
		{"expiry changed", [][]byte{key}, rk, tamper(5), false},
		{"data changed", [][]byte{key}, rk, tamper(headerSize + 2), false},
		{"mac changed", [][]byte{key}, rk, tamper(len(good) - 1), false},
		{"truncated", [][]byte{key}, rk, good[:len(good)-1], false},
		{"empty", [][]byte{key}, rk, nil, false},
		{"unsigned data", [][]byte{key}, rk, append([]byte{envelopeVersion, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 40)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := open(tc.keys, tc.redisKey, tc.b)
			if ok != tc.ok {
				t.Fatalf("open ok = %v, want %v", ok, tc.ok)
			}
			if ok && (!bytes.Equal(got.Data, e.Data) || !got.Expires.Equal(e.Expires)) {
				t.Fatalf("open = %+v, want %+v", got, e)
			}
		})
	}
}
