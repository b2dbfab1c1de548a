package redisstore

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Key is a fleet's HMAC key ([Config.Key]) read from configuration. It
// prints, logs and marshals as its length only, so that a configuration
// printed whole (%+v, a test failure, a log attribute, JSON) never shows
// it.
type Key []byte

// ParseKey reads a key written in base64 (standard or URL-safe, padded or
// not), as `openssl rand -base64 32` prints one, and refuses one shorter
// than [MinKeySize] bytes. Its errors describe the text by its length,
// never by its content.
func ParseKey(text string) (Key, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("redisstore: no key: at least %d random bytes in base64 are needed, the same on every replica (openssl rand -base64 32)", MinKeySize)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(text)
		if err != nil {
			continue
		}
		if len(b) < MinKeySize {
			return nil, fmt.Errorf("redisstore: the key decodes to %d bytes; it needs at least %d random bytes (openssl rand -base64 32)", len(b), MinKeySize)
		}
		return Key(b), nil
	}
	return nil, errors.New("redisstore: the key (" + fmt.Sprint(len(text)) + " characters) is not base64; generate one with openssl rand -base64 32")
}

// Format writes the key's length, whatever the verb.
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.describe()) }

// LogValue is the key's length.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.describe()) }

// MarshalText is the key's length: encoding/json would otherwise write the
// key in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.describe()), nil }

func (k Key) describe() string {
	if k == nil {
		return "[no key]"
	}
	return fmt.Sprintf("[%d-byte key]", len(k))
}
