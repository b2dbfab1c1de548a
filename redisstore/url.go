package redisstore

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// CheckURL reports whether s is a URL [Config.URL] accepts: redis:// or
// rediss:// with a host, as go-redis parses it. Its error never quotes the
// URL's userinfo (an ACL user and password), so it can be logged; [New]
// returns it too.
func CheckURL(s string) error {
	_, err := parseURL(s)
	return err
}

// RedactURL returns s fit for a log line: scheme, host and path, without
// the userinfo or the query.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

func parseURL(s string) (*redis.Options, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		// url.Parse's error quotes the whole URL, password included.
		return nil, errors.New("not a URL such as redis://127.0.0.1:6379/0")
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return nil, fmt.Errorf("scheme %q: want redis:// or rediss:// (TLS), as in redis://127.0.0.1:6379/0", u.Scheme)
	case u.Hostname() == "":
		return nil, fmt.Errorf("%s: no host", RedactURL(s))
	}
	opts, err := redis.ParseURL(s)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "redis: ")
		if u.User != nil {
			msg = strings.ReplaceAll(msg, u.User.String(), "…")
		}
		return nil, fmt.Errorf("%s: %s", RedactURL(s), msg)
	}
	return opts, nil
}
