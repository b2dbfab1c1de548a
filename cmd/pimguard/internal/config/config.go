// Package config reads pimguard's YAML configuration file: the tenant, the
// token audiences, Graph, the cache, account checks, fleet mode and the
// ordered rules of the forward-auth server. [Parse] validates all of it
// before anything starts and reports every problem with the file, line,
// column and reason; a configuration that loads is one the program can
// run.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

// Defaults of the optional keys.
const (
	DefaultGraphURL = "https://graph.microsoft.com/v1.0"
	DefaultListen   = "127.0.0.1:8081"
)

// Environment variables that override the file, for secrets.
const (
	// EnvSharedKey is the fleet's HMAC key in base64 (fleet.shared-key-file
	// otherwise).
	EnvSharedKey = "PIMGUARD_SHARED_KEY"
	// EnvRedisURL is the fleet's Redis URL, which may hold a password
	// (fleet.redis-url otherwise).
	EnvRedisURL = "PIMGUARD_REDIS_URL"
)

// File is a validated configuration.
type File struct {
	// Path is the file it was read from.
	Path string

	Tenant    string   // tenant: a GUID
	Audiences []string // audiences
	Authority string   // authority; "" for middleware's default

	GraphURL  string // graph.url
	GraphAuth string // graph.auth: "azure" (DefaultAzureCredential) or "none" (loopback URL only)
	// GraphSource is graph.source: "principal" (a Graph lookup per
	// principal, the default) or "snapshot" (a tenant-wide snapshot swept
	// every SweepInterval: Graph cost independent of the number of callers).
	GraphSource   string
	SweepInterval time.Duration // graph.sweep-interval; 0: half of cache.ttl, the cache taking the other half

	CacheTTL    time.Duration // cache.ttl; 0 for middleware's default
	NegativeTTL time.Duration // cache.negative-ttl
	MaxStale    time.Duration // cache.max-stale
	CacheSize   int           // cache.size

	AccountChecks middleware.AccountChecks // account-checks
	ClaimsPolicy  middleware.ClaimsPolicy  // claims-policy

	Listen      string // listen
	AdminListen string // admin-listen: /healthz, /readyz, /metrics; "" none (serve mode also has them on listen)
	EnvoyPrefix string // envoy-prefix

	// RedisURL turns fleet mode on (fleet.redis-url, or PIMGUARD_REDIS_URL);
	// SharedKey is then set (PIMGUARD_SHARED_KEY, or fleet.shared-key-file).
	RedisURL  string
	SharedKey redisstore.Key

	Rules []forwardauth.Rule
}

// Error is one problem in the file, at a line and column (1-based; 0 when
// it concerns the whole file).
type Error struct {
	File         string
	Line, Column int
	Err          error
}

func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	case e.Column == 0:
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d:%d: %v", e.File, e.Line, e.Column, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and validates the file at path. Secrets come from getenv
// (os.Getenv when nil) where set: see [EnvSharedKey] and [EnvRedisURL].
func Load(path string, getenv func(string) string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, getenv)
}

// Parse validates data, the contents of the file name. Its error joins an
// [*Error] per problem found (errors.Join), in the order of the file.
func Parse(name string, data []byte, getenv func(string) string) (*File, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := &parser{file: &File{Path: name, GraphURL: DefaultGraphURL, GraphAuth: "azure", GraphSource: "principal", Listen: DefaultListen}, name: name, getenv: getenv}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, &Error{File: name, Line: yamlErrorLine(err), Err: fmt.Errorf("not YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column, Err: errors.New("a second YAML document: the file must hold one")}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Err: errors.New("empty")}
	}
	p.top(doc.Content[0])
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return p.file, nil
}

// yamlErrorLine finds the line in a yaml syntax error ("yaml: line 3: …").
func yamlErrorLine(err error) int {
	_, rest, ok := strings.Cut(err.Error(), "line ")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimRight(rest[:strings.IndexFunc(rest+":", func(r rune) bool { return r < '0' || r > '9' })], ":"))
	return n
}

type parser struct {
	file   *File
	name   string
	getenv func(string) string
	errs   []error
	// keyFailed is set when a shared key (the file's or the
	// environment's) was refused: the missing key is not reported again.
	keyFailed bool
	// ruleNodes are the rules' nodes, by index, for errors about a rule
	// found once all are read (an unreachable pattern).
	ruleNodes []*yaml.Node
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.name, Line: n.Line, Column: n.Column, Err: fmt.Errorf(format, args...)})
}

// fields calls each key's handler for the keys of mapping n, refusing
// unknown and repeated keys and reporting missing required ones (those
// listed in required).
func (p *parser) fields(n *yaml.Node, what string, handlers map[string]func(*yaml.Node), required ...string) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping of keys", what)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		h, ok := handlers[k.Value]
		switch {
		case !ok:
			p.errorf(k, "unknown key %q in %s (known: %s)", k.Value, what, keys(handlers))
		case seen[k.Value]:
			p.errorf(k, "key %q given twice in %s", k.Value, what)
		default:
			seen[k.Value] = true
			h(v)
		}
	}
	for _, r := range required {
		if !seen[r] {
			p.errorf(n, "%s: required key %q is missing", what, r)
		}
	}
}

func keys[V any](m map[string]V) string { return strings.Join(slices.Sorted(maps.Keys(m)), ", ") }

func (p *parser) top(n *yaml.Node) {
	f := p.file
	var rulesNode *yaml.Node
	p.fields(n, "the configuration", map[string]func(*yaml.Node){
		"tenant": func(v *yaml.Node) {
			if s, ok := p.scalar(v, "tenant"); ok {
				if !graphcheck.IsGUID(s) {
					p.errorf(v, "tenant %q is not a GUID (the directory (tenant) ID of the Entra tenant)", s)
				}
				f.Tenant = strings.ToLower(s)
			}
		},
		"audiences": func(v *yaml.Node) {
			f.Audiences = p.strings(v, "audiences")
			if len(f.Audiences) == 0 && v.Kind == yaml.SequenceNode {
				p.errorf(v, "audiences is empty: list the API's application ID URI and/or client ID")
			}
		},
		"authority": func(v *yaml.Node) {
			if s, ok := p.scalar(v, "authority"); ok {
				if err := checkHTTPURL(s); err != nil {
					p.errorf(v, "authority: %v", err)
				}
				f.Authority = s
			}
		},
		"graph": func(v *yaml.Node) {
			p.fields(v, "graph", map[string]func(*yaml.Node){
				"url": func(v *yaml.Node) {
					if s, ok := p.scalar(v, "graph.url"); ok {
						if err := checkHTTPURL(s); err != nil {
							p.errorf(v, "graph.url: %v", err)
						}
						f.GraphURL = s
					}
				},
				"auth": func(v *yaml.Node) {
					if s, ok := p.scalar(v, "graph.auth"); ok {
						if s != "azure" && s != "none" {
							p.errorf(v, "graph.auth %q is neither azure (DefaultAzureCredential: workload or managed identity, or the AZURE_* variables) nor none", s)
						}
						f.GraphAuth = s
					}
				},
				"source": func(v *yaml.Node) {
					if s, ok := p.scalar(v, "graph.source"); ok {
						if s != "principal" && s != "snapshot" {
							p.errorf(v, "graph.source %q is neither principal (a Graph lookup per caller) nor snapshot (a tenant-wide snapshot per sweep interval)", s)
						}
						f.GraphSource = s
					}
				},
				"sweep-interval": func(v *yaml.Node) { f.SweepInterval = p.duration(v, "graph.sweep-interval") },
			})
		},
		"cache": func(v *yaml.Node) {
			p.fields(v, "cache", map[string]func(*yaml.Node){
				"ttl":          func(v *yaml.Node) { f.CacheTTL = p.duration(v, "cache.ttl") },
				"negative-ttl": func(v *yaml.Node) { f.NegativeTTL = p.duration(v, "cache.negative-ttl") },
				"max-stale":    func(v *yaml.Node) { f.MaxStale = p.duration(v, "cache.max-stale") },
				"size": func(v *yaml.Node) {
					if s, ok := p.scalar(v, "cache.size"); ok {
						n, err := strconv.Atoi(s)
						if err != nil || n <= 0 {
							p.errorf(v, "cache.size %q is not a positive number of principals", s)
						}
						f.CacheSize = n
					}
				},
			})
		},
		"account-checks": func(v *yaml.Node) {
			names := p.strings(v, "account-checks")
			if err := f.AccountChecks.UnmarshalText([]byte(strings.Join(names, ","))); err != nil {
				p.errorf(v, "account-checks: %v", strings.TrimPrefix(err.Error(), "middleware: "))
			}
		},
		"claims-policy": func(v *yaml.Node) {
			if s, ok := p.scalar(v, "claims-policy"); ok {
				if err := f.ClaimsPolicy.UnmarshalText([]byte(s)); err != nil {
					p.errorf(v, "claims-policy: %v", strings.TrimPrefix(err.Error(), "middleware: "))
				}
			}
		},
		"listen":       func(v *yaml.Node) { f.Listen = p.address(v, "listen", "127.0.0.1:8081") },
		"admin-listen": func(v *yaml.Node) { f.AdminListen = p.address(v, "admin-listen", "127.0.0.1:9091") },
		"envoy-prefix": func(v *yaml.Node) {
			if s, ok := p.scalar(v, "envoy-prefix"); ok {
				if !strings.HasPrefix(s, "/") || s == "/" || s == "/auth" || strings.ContainsAny(s, "?# ") {
					p.errorf(v, "envoy-prefix %q must be a path such as /ext-authz (not / or /auth)", s)
				}
				f.EnvoyPrefix = s
			}
		},
		"fleet": func(v *yaml.Node) { p.fleet(v) },
		"rules": func(v *yaml.Node) { rulesNode = v },
	}, "tenant", "audiences", "rules")

	// Secrets from the environment override the file.
	if s := p.getenv(EnvRedisURL); s != "" {
		f.RedisURL = strings.TrimSpace(s)
		if err := redisstore.CheckURL(f.RedisURL); err != nil {
			p.errs = append(p.errs, fmt.Errorf("%s: %v", EnvRedisURL, err))
		}
	}
	if s := p.getenv(EnvSharedKey); s != "" {
		k, err := redisstore.ParseKey(s)
		if err != nil {
			p.keyFailed = true
			p.errs = append(p.errs, fmt.Errorf("%s: %v", EnvSharedKey, strings.TrimPrefix(err.Error(), "redisstore: ")))
		}
		f.SharedKey = k
	}
	switch {
	case f.RedisURL != "" && f.SharedKey == nil && !p.keyFailed:
		p.errs = append(p.errs, &Error{File: p.name, Err: fmt.Errorf("fleet mode needs a shared key: set %s or fleet.shared-key-file (openssl rand -base64 32, the same on every replica)", EnvSharedKey)})
	case f.RedisURL == "" && f.SharedKey != nil:
		p.errs = append(p.errs, &Error{File: p.name, Err: fmt.Errorf("a shared key is set but no Redis URL: set fleet.redis-url or %s, or remove the key", EnvRedisURL)})
	}
	if f.SweepInterval != 0 && f.GraphSource != "snapshot" {
		p.errs = append(p.errs, &Error{File: p.name, Err: errors.New("graph.sweep-interval is set but graph.source is not snapshot")})
	}
	if f.GraphAuth == "none" {
		if u, err := url.Parse(f.GraphURL); err != nil || !graphcheck.IsLoopbackHost(u.Hostname()) {
			p.errs = append(p.errs, &Error{File: p.name, Err: fmt.Errorf("graph.auth none sends Graph requests without a token: graph.url must be a loopback URL (a fake tenant), not %q", f.GraphURL)})
		}
	}
	if rulesNode != nil {
		p.rules(rulesNode)
	}
}

func (p *parser) fleet(n *yaml.Node) {
	f := p.file
	p.fields(n, "fleet", map[string]func(*yaml.Node){
		"redis-url": func(v *yaml.Node) {
			if s, ok := p.scalar(v, "fleet.redis-url"); ok {
				if err := redisstore.CheckURL(s); err != nil {
					p.errorf(v, "fleet.redis-url: %v", err)
				}
				f.RedisURL = s
			}
		},
		"shared-key-file": func(v *yaml.Node) {
			s, ok := p.scalar(v, "fleet.shared-key-file")
			if !ok || p.getenv(EnvSharedKey) != "" {
				return
			}
			data, err := os.ReadFile(s)
			if err != nil {
				p.keyFailed = true
				p.errorf(v, "fleet.shared-key-file: %v", err)
				return
			}
			k, err := redisstore.ParseKey(string(data))
			if err != nil {
				p.keyFailed = true
				p.errorf(v, "fleet.shared-key-file %s: %v", s, strings.TrimPrefix(err.Error(), "redisstore: "))
				return
			}
			f.SharedKey = k
		},
		"shared-key": func(v *yaml.Node) {
			p.keyFailed = true
			p.errorf(v, "fleet.shared-key: a secret does not belong in the configuration file; set %s or fleet.shared-key-file", EnvSharedKey)
		},
	})
}

// address reads a listen address, host:port.
func (p *parser) address(n *yaml.Node, what, example string) string {
	s, ok := p.scalar(n, what)
	if ok {
		if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
			p.errorf(n, "%s %q is not host:port (e.g. %s)", what, s, example)
		}
	}
	return s
}

func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, "%s must be a single value", what)
		return "", false
	}
	s := strings.TrimSpace(n.Value)
	if s == "" {
		p.errorf(n, "%s is empty", what)
		return "", false
	}
	return s, true
}

// strings reads a sequence of scalars, or a single scalar as a list of one.
func (p *parser) strings(n *yaml.Node, what string) []string {
	if n.Kind == yaml.ScalarNode {
		if s, ok := p.scalar(n, what); ok {
			return []string{s}
		}
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list", what)
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		if s, ok := p.scalar(c, what+" entry"); ok {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) duration(n *yaml.Node, what string) time.Duration {
	s, ok := p.scalar(n, what)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.errorf(n, "%s %q is not a positive duration such as 30s or 5m", what, s)
		return 0
	}
	return d
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Scheme != "https" && !(u.Scheme == "http" && graphcheck.IsLoopbackHost(u.Hostname())):
		return fmt.Errorf("%q must be an https URL (http only on loopback)", s)
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}
