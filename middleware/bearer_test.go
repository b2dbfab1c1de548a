package middleware_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pimguard/pimguard/middleware"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		want    string
		err     error
	}{
		{"plain", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", nil},
		{"scheme is case-insensitive", []string{"bearer abc"}, "abc", nil},
		{"upper-case scheme", []string{"BEARER abc"}, "abc", nil},
		{"several spaces", []string{"Bearer    abc"}, "abc", nil},
		{"b64token alphabet and padding", []string{"Bearer aZ09-._~+/=="}, "aZ09-._~+/==", nil},
		{"no header", nil, "", middleware.ErrTokenMissing},
		{"Basic", []string{"Basic dXNlcjpwYXNz"}, "", middleware.ErrTokenMissing},
		{"Bearerish scheme", []string{"Bearerx abc"}, "", middleware.ErrTokenMissing},
		{"empty header", []string{""}, "", middleware.ErrTokenMissing},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", middleware.ErrRequestMalformed},
		{"scheme alone", []string{"Bearer"}, "", middleware.ErrTokenMalformed},
		{"scheme and spaces", []string{"Bearer   "}, "", middleware.ErrTokenMalformed},
		{"tab instead of space", []string{"Bearer\tabc"}, "", middleware.ErrTokenMissing},
		{"two tokens", []string{"Bearer abc def"}, "", middleware.ErrTokenMalformed},
		{"padding in the middle", []string{"Bearer ab=c"}, "", middleware.ErrTokenMalformed},
		{"only padding", []string{"Bearer =="}, "", middleware.ErrTokenMalformed},
		{"NUL byte", []string{"Bearer ab\x00c"}, "", middleware.ErrTokenMalformed},
		{"non-ASCII", []string{"Bearer abcé"}, "", middleware.ErrTokenMalformed},
		{"quotes", []string{`Bearer "abc"`}, "", middleware.ErrTokenMalformed},
		{"at the cap", []string{"Bearer " + strings.Repeat("a", 64)}, strings.Repeat("a", 64), nil},
		{"over the cap", []string{"Bearer " + strings.Repeat("a", 65)}, "", middleware.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := middleware.BearerToken(r, 64)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("token = %q, want %q", got, tt.want)
			}
		})
	}
}
