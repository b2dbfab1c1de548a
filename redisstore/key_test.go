package redisstore_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/pimguard/pimguard/redisstore"
)

func TestParseKey(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789abcdef!")
	tests := []struct {
		name, text string
		err        string
	}{
		{"standard", base64.StdEncoding.EncodeToString(raw), ""},
		{"unpadded", base64.RawStdEncoding.EncodeToString(raw), ""},
		{"url-safe", base64.URLEncoding.EncodeToString(raw), ""},
		{"surrounding blanks", "  " + base64.StdEncoding.EncodeToString(raw) + "\n", ""},
		{"empty", "", "no key"},
		{"blanks", "   ", "no key"},
		{"too short", base64.StdEncoding.EncodeToString(raw[:31]), "decodes to 31 bytes"},
		{"not base64", "this is not base64 at all!!", "not base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := redisstore.ParseKey(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(tc.text)) && strings.TrimSpace(tc.text) != "" {
					t.Fatalf("the error shows the key text: %v", err)
				}
				return
			}
			if err != nil || string(k) != string(raw) {
				t.Fatalf("got %d bytes, %v", len(k), err)
			}
		})
	}
}

// A Key never shows itself: not printed, logged or marshalled.
func TestKeyNeverShows(t *testing.T) {
	k := redisstore.Key("0123456789abcdef0123456789abcdef")
	j, _ := json.Marshal(struct{ K redisstore.Key }{k})
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("x", "key", k)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v %x %s %q", k, k, k, k), string(j), sb.String()} {
		if strings.Contains(s, "0123") || strings.Contains(s, base64.StdEncoding.EncodeToString(k)[:8]) || strings.Contains(s, "3031") {
			t.Errorf("the key shows: %s", s)
		}
		if !strings.Contains(s, "32-byte key") {
			t.Errorf("no length in %s", s)
		}
	}
}
