package forwardauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/pimguard/pimguard/middleware"
)

// Access says what a [Rule] demands besides matching.
type Access uint8

const (
	// AccessRequirement (the zero value) allows a request while the rule's
	// Require is met, decided by the Guard (live PIM state, account
	// checks).
	AccessRequirement Access = iota
	// AccessAuthenticated allows any caller with a valid access token whose
	// live state the Guard can fetch (Guard.Load: account checks still
	// apply, and X-Pimguard-Roles lists the live roles).
	AccessAuthenticated
	// AccessPublic allows every request, with or without a token: no
	// identity header is sent upstream.
	AccessPublic
)

func (a Access) String() string {
	switch a {
	case AccessRequirement:
		return "requirement"
	case AccessAuthenticated:
		return "authenticated"
	case AccessPublic:
		return "public"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// Rule grants the requests that one of its Patterns matches when its
// Access is satisfied. Rules are tried in order and the first whose
// pattern matches decides; a request that no rule matches is denied (403
// no_rule).
type Rule struct {
	// Name identifies the rule in the X-Pimguard-Rule header sent upstream
	// and in logs. Default: its first pattern. It must be printable ASCII.
	Name string
	// Patterns are Go 1.22 net/http.ServeMux patterns, "[METHOD ][HOST]/PATH"
	// (e.g. "POST /api/users/{id}/reset-password", "GET /static/"): a
	// pattern with GET also matches HEAD; one without a method matches
	// every method; wildcards match one path segment, {name...} the rest
	// of the path, and a trailing slash every path below it.
	Patterns []string
	// Access is what the rule demands; see [Access].
	Access Access
	// Require is the requirement of an [AccessRequirement] rule; it must
	// be valid ([middleware.Requirement.Validate]). Ignored otherwise.
	Require middleware.Requirement
}

// RuleError is the error of [New] and [ValidateRules] for an invalid rule:
// which one (its index in the list, from 0), which of its patterns when one
// is at fault (else ""), and why.
type RuleError struct {
	Index   int
	Pattern string
	Err     error
}

func (e *RuleError) Error() string {
	if e.Pattern != "" {
		return fmt.Sprintf("forwardauth: rule %d, pattern %q: %v", e.Index+1, e.Pattern, e.Err)
	}
	return fmt.Sprintf("forwardauth: rule %d: %v", e.Index+1, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// ValidateRules reports the first problem [New] would refuse rules for: no
// rule, a rule without a pattern, an invalid pattern, name or requirement,
// or a pattern that an earlier one shadows. Its error is a *[RuleError],
// except for an empty list.
func ValidateRules(rules []Rule) error {
	_, err := compile(rules)
	return err
}

// compiledRule is a validated Rule with one ServeMux per pattern, so that
// rules are tried in order (one ServeMux holding every pattern would pick
// the most specific, not the first).
type compiledRule struct {
	Rule
	muxes []*http.ServeMux
}

// matched is the handler registered for every pattern: a request matches a
// pattern exactly when its ServeMux returns it (a redirect to a cleaned or
// slash-terminated path, a 404 or a 405 does not).
type matched struct{}

func (matched) ServeHTTP(http.ResponseWriter, *http.Request) {}

var matchedHandler = &matched{}

// compile validates rules and prepares them for matching. Besides each
// pattern's syntax and each requirement, it refuses a pattern that an
// earlier one (of the same or an earlier rule) matches every request of:
// first match wins, so it could never decide anything.
func compile(rules []Rule) ([]*compiledRule, error) {
	if len(rules) == 0 {
		return nil, errors.New("forwardauth: no rules: every request would be denied")
	}
	out := make([]*compiledRule, 0, len(rules))
	type earlier struct {
		rule, pattern string
		mux           *http.ServeMux
	}
	var seen []earlier
	for i, r := range rules {
		if len(r.Patterns) == 0 {
			return nil, &RuleError{Index: i, Err: errors.New("no pattern")}
		}
		if r.Name == "" {
			r.Name = r.Patterns[0]
		}
		if !validHeaderValue(r.Name) {
			return nil, &RuleError{Index: i, Err: fmt.Errorf("name %.80q is not printable ASCII", r.Name)}
		}
		switch r.Access {
		case AccessRequirement:
			if err := r.Require.Validate(); err != nil {
				return nil, &RuleError{Index: i, Err: err}
			}
		case AccessAuthenticated, AccessPublic:
		default:
			return nil, &RuleError{Index: i, Err: fmt.Errorf("unknown access %v", r.Access)}
		}
		cr := &compiledRule{Rule: r}
		for _, p := range r.Patterns {
			mux, err := newPatternMux(p)
			if err == nil {
				err = checkPatternForm(p)
			}
			if err == nil {
				var probes []*http.Request
				if probes, err = probesFor(p); err == nil {
					for _, e := range seen {
						if matchesAll(e.mux, probes) {
							err = fmt.Errorf("unreachable: %q of rule %q, tried first, matches every request it matches", e.pattern, e.rule)
							break
						}
					}
				}
			}
			if err != nil {
				return nil, &RuleError{Index: i, Pattern: p, Err: err}
			}
			seen = append(seen, earlier{rule: r.Name, pattern: p, mux: mux})
			cr.muxes = append(cr.muxes, mux)
		}
		out = append(out, cr)
	}
	return out, nil
}

// newPatternMux returns a ServeMux holding only pattern, or the reason
// ServeMux refuses it.
func newPatternMux(pattern string) (mux *http.ServeMux, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux = http.NewServeMux()
	mux.Handle(pattern, matchedHandler)
	return mux, nil
}

// checkPatternForm refuses what ServeMux accepts but no request could
// match once [Server.match] has made it canonical: a method not in upper
// case, a host in upper case, with a trailing dot, or with a port (a
// request's port is never compared).
func checkPatternForm(pattern string) error {
	rest := pattern
	if method, after, ok := strings.Cut(pattern, " "); ok {
		if method != strings.ToUpper(method) {
			return fmt.Errorf("method %q must be upper case: requests in other cases match no rule", method)
		}
		rest = strings.TrimLeft(after, " \t")
	}
	host, _, _ := strings.Cut(rest, "/")
	switch {
	case host != strings.ToLower(host):
		return fmt.Errorf("host %q must be lower case: hosts are compared in lower case", host)
	case strings.HasSuffix(host, "."):
		return fmt.Errorf("host %q must not end with a dot", host)
	case strings.Contains(host, ":"):
		return fmt.Errorf("host %q must not name a port: a request's port is not compared", host)
	}
	return nil
}

// matches reports whether mux's pattern matches r.
func matches(mux *http.ServeMux, r *http.Request) bool {
	h, _ := mux.Handler(r)
	return h == http.Handler(matchedHandler)
}

func matchesAll(mux *http.ServeMux, probes []*http.Request) bool {
	for _, r := range probes {
		if !matches(mux, r) {
			return false
		}
	}
	return true
}

// probeValue stands for a wildcard in probe requests: no literal of a
// sensible pattern equals it, so an earlier pattern matches a probe only
// where it has a wildcard (or a trailing slash) too.
const probeValue = "pimguard-probe-7f3a9c"

// probesFor returns requests that, between them, stand for every request
// pattern matches: its method (or an unusual one, for a pattern without a
// method), its host (or an unusual one), literal segments as written and
// wildcards as [probeValue]; a trailing {name...} or slash stands for zero,
// one and two further segments. Another pattern matches all of them only if
// it matches every request pattern does. (pattern has been accepted by
// ServeMux.)
func probesFor(pattern string) ([]*http.Request, error) {
	method, rest, hasMethod := strings.Cut(pattern, " ")
	if !hasMethod {
		method, rest = "PIMGUARDPROBE", pattern
	}
	rest = strings.TrimLeft(rest, " \t")
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return nil, errors.New("no path")
	}
	host, path := rest[:slash], rest[slash:]
	if host == "" {
		host = "probe.pimguard.invalid"
	}
	segs := strings.Split(path[1:], "/")
	var fixed []string
	tails := [][]string{nil}
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case last && s == "": // trailing slash: everything below
			tails = [][]string{{""}, {probeValue}, {probeValue, probeValue}}
		case last && s == "{$}":
			fixed = append(fixed, "")
		case last && strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}"):
			tails = [][]string{{""}, {probeValue}, {probeValue, probeValue}}
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			fixed = append(fixed, probeValue)
		default:
			lit, err := url.PathUnescape(s)
			if err != nil {
				return nil, err
			}
			fixed = append(fixed, lit)
		}
	}
	probes := make([]*http.Request, 0, len(tails))
	for _, tail := range tails {
		p := "/" + strings.Join(append(append([]string(nil), fixed...), tail...), "/")
		u := &url.URL{Path: p}
		probes = append(probes, &http.Request{Method: method, Host: host, URL: u, Header: http.Header{}})
	}
	return probes, nil
}

// validHeaderValue reports whether s can be sent as a header value as is.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
