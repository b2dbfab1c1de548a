package redisstore_test

import (
	"strings"
	"testing"

	"github.com/pimguard/pimguard/redisstore"
)

func TestURLErrorsNeverShowThePassword(t *testing.T) {
	const secret = "hunter2-s3cret"
	for _, tc := range []struct {
		url  string
		ok   bool
		want string // in the error
	}{
		{"redis://127.0.0.1:6379/0", true, ""},
		{"rediss://fleet:" + secret + "@redis.internal:6380/2", true, ""},
		{"redis://fleet:" + secret + "@127.0.0.1:6379/notadb", false, "redis://127.0.0.1:6379/notadb"},
		{"redis://fleet:" + secret + "@127.0.0.1:6379/0?dial_timeout=forever", false, "dial_timeout"},
		{"http://fleet:" + secret + "@127.0.0.1/", false, `scheme "http"`},
		{"redis://fleet:" + secret + "@/0", false, "no host"},
		{"redis://fleet:" + secret + "@127.0.0.1:6379/%zz", false, "not a URL"},
		{"127.0.0.1:6379", false, "not a URL"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			err := redisstore.CheckURL(tc.url)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckURL = %v, want ok %v", err, tc.ok)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			_, nerr := redisstore.New(redisstore.Config{URL: tc.url, Key: testKey})
			for _, e := range []error{err, nerr} {
				if e == nil || strings.Contains(e.Error(), secret) {
					t.Errorf("error %v shows the password (or is nil)", e)
				}
			}
			if r := redisstore.RedactURL(tc.url); strings.Contains(r, secret) {
				t.Errorf("RedactURL = %q", r)
			}
		})
	}
}
