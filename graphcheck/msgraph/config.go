package msgraph

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pimguard/pimguard/graphcheck"
)

// Defaults applied by [New] to the zero fields of a [Config].
const (
	DefaultBaseURL       = "https://graph.microsoft.com/v1.0"
	DefaultTimeout       = 10 * time.Second
	DefaultGroupRolesTTL = 30 * time.Second
	DefaultMaxPages      = 50
	DefaultMaxRetries    = 3
	DefaultRetryDelay    = time.Second

	DefaultRiskTTL               = 5 * time.Minute
	DefaultRiskRequestsPerSecond = 1.0
	DefaultRiskBurst             = 1
	DefaultRiskCacheSize         = 10_000
)

// NoRetries is the [Config.MaxRetries] value that turns retries off (0 means
// [DefaultMaxRetries], as in the Kiota retry handler).
const NoRetries = -1

// ErrInvalidConfig is wrapped by the errors [New] returns for a [Config] it
// refuses; the wrapping text names the field.
var ErrInvalidConfig = errors.New("msgraph: invalid config")

// Config sets up a [Source]. The zero value is valid for production use
// against the global Microsoft Graph service with DefaultAzureCredential;
// every zero field takes its default, and [New] rejects negative durations
// and counts (except MaxRetries = [NoRetries]).
type Config struct {
	// BaseURL is the Graph endpoint with its version, e.g.
	// "https://graph.microsoft.us/v1.0" for US Government L4 or the
	// [graphtest.Server.GraphURL] of a fake tenant; "" means
	// [DefaultBaseURL]. It must be https, except on a loopback host
	// (localhost, 127.0.0.0/8, ::1), and carry no query, fragment or user
	// information. Tokens are sent to this host only, and @odata.nextLink
	// values that leave it are refused.
	BaseURL string

	// Credential obtains app-only tokens for Graph. nil means
	// azidentity.NewDefaultAzureCredential(nil) (environment, workload
	// identity, managed identity, Azure CLI), created by New without any
	// network call; the first Lookup asks it for a token.
	Credential azcore.TokenCredential

	// InsecureNoCredential sends requests without an Authorization header.
	// It exists for tests and demos against a fake tenant and is refused
	// unless BaseURL is on a loopback host, and together with Credential.
	InsecureNoCredential bool

	// Scope is the OAuth scope requested from Credential. "" derives it from
	// BaseURL's host: "https://{host}/.default" for graph.microsoft.com,
	// graph.microsoft.us, dod-graph.microsoft.us and
	// microsoftgraph.chinacloudapi.cn, and
	// "https://graph.microsoft.com/.default" for a loopback host. Any other
	// host requires Scope to be set.
	Scope string

	// Timeout bounds each Lookup on top of the caller's context, retries
	// included, and bounds the shared fetch of group roles; 0 means
	// [DefaultTimeout].
	Timeout time.Duration

	// GroupRolesTTL is how long the tenant-wide map of role-assignable
	// groups to their active role assignments is reused, measured on Now;
	// 0 means [DefaultGroupRolesTTL]. Roles held through a group are
	// therefore up to GroupRolesTTL stale (an instance that has reached its
	// endDateTime is always dropped, whatever the TTL); roles held directly
	// and PIM-for-Groups memberships are read on every Lookup.
	GroupRolesTTL time.Duration

	// MaxPages bounds the pages read from one Graph collection (following
	// @odata.nextLink); a longer collection fails the Lookup with
	// [graphcheck.ErrUnavailable] rather than yield a partial answer; 0
	// means [DefaultMaxPages].
	MaxPages int

	// MaxRetries is how many times throttled (429) or unavailable (503, 504)
	// requests are sent again within one Lookup, whether the whole $batch
	// or sub-requests inside it failed; 0 means [DefaultMaxRetries] and
	// [NoRetries] disables retries. A retry happens only if its wait fits
	// before the deadline. A 429 with a Retry-After also pauses the
	// tenant's other lookups (see TenantLimits and the package
	// documentation).
	MaxRetries int

	// RetryDelay is the wait before the first retry when Graph sends no
	// Retry-After header; it doubles for each further retry. 0 means
	// [DefaultRetryDelay]. A Retry-After header (seconds, fractions such as
	// "2.128" included, or an HTTP date) always wins.
	RetryDelay time.Duration

	// RiskTTL is how long a user's Identity Protection risk is reused
	// before it is read again, measured on Now; 0 means [DefaultRiskTTL].
	// Risk is read only for lookups that ask for it ([graphcheck.NeedRisk])
	// and is cached separately from PIM state because Identity Protection
	// throttles hard (see RiskRequestsPerSecond) and computes risk offline
	// anyway: a risk raised now is seen within RiskTTL plus the Guard's
	// cache TTL.
	RiskTTL time.Duration

	// RiskRequestsPerSecond and RiskBurst shape a token-bucket limiter
	// (golang.org/x/time/rate) on riskyUsers requests, one per tenant:
	// Identity Protection allows about one request per second per tenant
	// for all applications together, and may answer 429 without a
	// Retry-After. A Lookup waits for the limiter (through Sleep) when the
	// wait fits before its deadline, and otherwise fails with
	// [graphcheck.ErrUnavailable] rather than skip the check. 0 means
	// [DefaultRiskRequestsPerSecond] and [DefaultRiskBurst].
	RiskRequestsPerSecond float64
	RiskBurst             int

	// RiskCacheSize bounds the number of users whose risk is cached; 0
	// means [DefaultRiskCacheSize].
	RiskCacheSize int

	// TenantLimits, when set, makes the Source's Graph limits tenant-wide
	// across every process that shares it (the replicas of one
	// deployment; cache/redisstore implements it on Redis). Graph
	// throttles per application and tenant, not per process, so replicas
	// that each keep limits of their own send N times what one may. With
	// it:
	//   - a riskyUsers request takes its turn from the tenant's shared
	//     bucket "riskyUsers" (RiskRequestsPerSecond, RiskBurst), waiting
	//     through Sleep as with the local limiter and failing with
	//     [graphcheck.ErrUnavailable] when the wait does not fit before
	//     the deadline;
	//   - a 429 with a Retry-After, of a $batch or of a sub-request inside
	//     one, pauses the tenant's $batch requests in every process that
	//     shares it (for at most [MaxPause]), not only in this one.
	//
	// nil means limits of this process only: its own riskyUsers limiter,
	// and a pause that holds back its own lookups of the tenant. When a
	// call to TenantLimits fails, the Source uses those for the request at
	// hand, never no limit, and logs the failure at debug level (the
	// implementation counts and reports its own outages). A Lookup calls
	// Paused before each $batch and, when it reads a risk that is not
	// cached, Take until it gets a turn; Pause after a 429. Warm requests,
	// answered from the Guard's cache, call nothing.
	TenantLimits graphcheck.TenantLimits

	// Now is the clock for GroupRolesTTL, RiskTTL, the riskyUsers limiter
	// and tenants' pauses, and for deciding which assignments are over
	// (graphcheck.Facts.FetchedAt); nil means [time.Now]. Tests pass the
	// fake tenant's clock. Deadlines always use real time.
	Now func() time.Time

	// Sleep waits between retries; it must return early with ctx's error
	// when ctx is done. nil means a timer-based wait. Tests replace it so
	// that nothing sleeps for real.
	Sleep func(ctx context.Context, d time.Duration) error

	// Transport is the network round tripper below the SDK's middleware
	// (retry, compression, telemetry handlers; redirects are never
	// followed, whatever the Transport); nil means Kiota's default
	// transport. Use it for proxies or custom TLS, not to replace the
	// middleware.
	Transport http.RoundTripper

	// Logger receives retry and failure events (never tokens); nil discards
	// them.
	Logger *slog.Logger

	// MeterProvider receives the Source's metrics (listed in the package
	// documentation): the duration of each HTTP round trip to Graph, failed
	// lookups and preflight checks by error class, and 429 answers by
	// request. nil means otel.GetMeterProvider(), the global provider,
	// which records nothing until the application installs one.
	MeterProvider metric.MeterProvider

	// TracerProvider receives one span per Lookup (pimguard.graph.lookup)
	// and per Preflight (pimguard.graph.preflight), carrying the tenant ID
	// but never an object ID or a token. nil means otel.GetTracerProvider(),
	// the global provider, a no-op until the application installs one. The
	// SDK's HTTP middleware makes its own spans for each request with the
	// global provider, whatever this says; they are children of these.
	TracerProvider trace.TracerProvider
}

// settings is a validated Config with its defaults applied.
type settings struct {
	Config
	base     *url.URL // BaseURL without a trailing slash
	baseStr  string
	loopback bool
}

func (c Config) resolve() (*settings, error) {
	s := &settings{Config: c}
	if s.BaseURL == "" {
		s.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(s.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("%w: BaseURL: %v", ErrInvalidConfig, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.Opaque != "":
		return nil, fmt.Errorf("%w: BaseURL %q is not an absolute http(s) URL", ErrInvalidConfig, s.BaseURL)
	case u.User != nil, u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		return nil, fmt.Errorf("%w: BaseURL %q must not carry user information, a query or a fragment", ErrInvalidConfig, s.BaseURL)
	case u.Path == "" || u.Path == "/":
		return nil, fmt.Errorf("%w: BaseURL %q has no version path such as /v1.0", ErrInvalidConfig, s.BaseURL)
	}
	u.Host = strings.ToLower(u.Host)
	s.base, s.baseStr = u, u.String()
	s.loopback = graphcheck.IsLoopbackHost(u.Hostname())
	if u.Scheme == "http" && !s.loopback {
		return nil, fmt.Errorf("%w: BaseURL %q must use https (http is allowed on loopback only)", ErrInvalidConfig, s.BaseURL)
	}

	switch {
	case s.InsecureNoCredential && s.Credential != nil:
		return nil, fmt.Errorf("%w: InsecureNoCredential and Credential are both set", ErrInvalidConfig)
	case s.InsecureNoCredential && !s.loopback:
		return nil, fmt.Errorf("%w: InsecureNoCredential is allowed only for a loopback BaseURL, not %q", ErrInvalidConfig, u.Host)
	}
	if s.Scope == "" && !s.InsecureNoCredential {
		if s.Scope = defaultScope(u.Hostname(), s.loopback); s.Scope == "" {
			return nil, fmt.Errorf("%w: no default Scope for Graph host %q; set Scope", ErrInvalidConfig, u.Hostname())
		}
	}

	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Timeout", &s.Timeout, DefaultTimeout},
		{"GroupRolesTTL", &s.GroupRolesTTL, DefaultGroupRolesTTL},
		{"RetryDelay", &s.RetryDelay, DefaultRetryDelay},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%w: %s is negative", ErrInvalidConfig, d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if s.RiskTTL < 0 {
		return nil, fmt.Errorf("%w: RiskTTL is negative", ErrInvalidConfig)
	}
	s.RiskTTL = cmp.Or(s.RiskTTL, DefaultRiskTTL)
	switch {
	case s.RiskRequestsPerSecond < 0 || math.IsNaN(s.RiskRequestsPerSecond) || math.IsInf(s.RiskRequestsPerSecond, 0):
		return nil, fmt.Errorf("%w: RiskRequestsPerSecond is %v", ErrInvalidConfig, s.RiskRequestsPerSecond)
	case s.RiskBurst < 0:
		return nil, fmt.Errorf("%w: RiskBurst is negative", ErrInvalidConfig)
	case s.RiskCacheSize < 0:
		return nil, fmt.Errorf("%w: RiskCacheSize is negative", ErrInvalidConfig)
	}
	s.RiskRequestsPerSecond = cmp.Or(s.RiskRequestsPerSecond, DefaultRiskRequestsPerSecond)
	s.RiskBurst = cmp.Or(s.RiskBurst, DefaultRiskBurst)
	s.RiskCacheSize = cmp.Or(s.RiskCacheSize, DefaultRiskCacheSize)
	switch {
	case s.MaxPages < 0:
		return nil, fmt.Errorf("%w: MaxPages is negative", ErrInvalidConfig)
	case s.MaxPages == 0:
		s.MaxPages = DefaultMaxPages
	}
	switch {
	case s.MaxRetries < NoRetries:
		return nil, fmt.Errorf("%w: MaxRetries is %d (use NoRetries to disable retries)", ErrInvalidConfig, s.MaxRetries)
	case s.MaxRetries == NoRetries:
		s.MaxRetries = 0
	case s.MaxRetries == 0:
		s.MaxRetries = DefaultMaxRetries
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Sleep == nil {
		s.Sleep = sleep
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// graphHosts are the Microsoft Graph national cloud endpoints whose scope is
// "https://{host}/.default".
var graphHosts = map[string]bool{
	"graph.microsoft.com":             true, // global service
	"graph.microsoft.us":              true, // US Government L4
	"dod-graph.microsoft.us":          true, // US Government L5 (DOD)
	"microsoftgraph.chinacloudapi.cn": true, // China operated by 21Vianet
}

func defaultScope(host string, loopback bool) string {
	switch {
	case graphHosts[host]:
		return "https://" + host + "/.default"
	case loopback:
		return "https://graph.microsoft.com/.default"
	}
	return ""
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
