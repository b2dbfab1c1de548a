package main

import (
	"encoding"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

// config is the example's configuration, read from PIMGUARD_* environment
// variables. The presence of PIMGUARD_TENANT_ID selects real mode; without
// it, and without any of [realModeVars], the example runs in demo mode
// against an in-process fake tenant.
type config struct {
	TenantID      string
	Audiences     []string
	Authority     string
	GraphURL      string
	GraphAuth     string // "azure" or "none"
	CacheTTL      time.Duration
	NegativeTTL   time.Duration
	ClaimsPolicy  middleware.ClaimsPolicy
	MaxStale      time.Duration
	AuditorsGroup string
	AccountChecks middleware.AccountChecks
	Preflight     bool // check Graph permissions at start (default: on in real mode)
	Addr          string
	// RedisURL turns fleet mode on: the replicas share their lookups,
	// purges and Graph limits on this Redis (redisstore). Empty: this
	// process alone.
	RedisURL string
	// SharedKey authenticates what the fleet writes to Redis; set exactly
	// when RedisURL is.
	SharedKey redisstore.Key
	// DeleteAuthContext is the Conditional Access authentication context
	// ("c1" to "c99") that DELETE /api/users/{id} also requires in the
	// token's acrs claim (a step-up); empty: none.
	DeleteAuthContext string
	// SourceMode is how PIM state is read from Graph: sourcePrincipal
	// (one $batch per principal per CacheTTL, the default) or
	// sourceSnapshot (a tenant-wide snapshot swept every CacheTTL / 2,
	// answering roles and groups without a Graph request per principal).
	SourceMode string
}

// Values of PIMGUARD_SOURCE_MODE.
const (
	sourcePrincipal = "principal"
	sourceSnapshot  = "snapshot"
)

// Demo reports whether no tenant is configured. loadConfig refuses a
// configuration that sets any of [realModeVars] without a tenant, so Demo
// never guesses at a half-configured real mode.
func (c config) Demo() bool { return c.TenantID == "" }

// The variables loadConfig reads, classified in one place: checkMode reads
// realModeVars, and the tests fail when loadConfig reads a variable that is
// neither here nor PIMGUARD_TENANT_ID, so a new real-mode variable cannot be
// forgotten by the check.
//
// The Azure SDK's variables (AZURE_CLIENT_ID, AZURE_TENANT_ID,
// AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, …), which
// DefaultAzureCredential reads in real mode, are deliberately in neither
// list: developers often set them machine-wide for other tools, and they must
// not stop the demo from starting.
var (
	// realModeVars configure real mode only; the demo ignores them. Any of
	// them set without PIMGUARD_TENANT_ID is a mistake (a misspelt tenant
	// variable, a secret that expanded to nothing) and stops the program:
	// falling back to the demo would serve an API whose /demo routes mint
	// administrators' tokens for anyone who asks.
	realModeVars = []string{
		"PIMGUARD_AUDIENCES",
		"PIMGUARD_AUTHORITY",
		"PIMGUARD_GRAPH_URL",
		"PIMGUARD_GRAPH_AUTH",
		"PIMGUARD_AUDITORS_GROUP",
	}
	// sharedVars configure both modes, so setting them selects neither.
	sharedVars = []string{
		"PIMGUARD_CACHE_TTL",
		"PIMGUARD_NEGATIVE_TTL",
		"PIMGUARD_CLAIMS_POLICY",
		"PIMGUARD_MAX_STALE",
		"PIMGUARD_ACCOUNT_CHECKS",
		"PIMGUARD_PREFLIGHT",
		"PIMGUARD_ADDR",
		"PIMGUARD_REDIS_URL",
		"PIMGUARD_SHARED_KEY",
		"PIMGUARD_DELETE_AUTH_CONTEXT",
		"PIMGUARD_SOURCE_MODE",
	}
)

// checkMode refuses a configuration without PIMGUARD_TENANT_ID that sets
// any of [realModeVars], naming them. A variable counts as set when it is
// not empty, blanks included: getenv cannot tell empty from unset.
func checkMode(getenv func(string) string) error {
	var set []string
	for _, name := range realModeVars {
		if getenv(name) != "" {
			set = append(set, name)
		}
	}
	if len(set) == 0 {
		return nil
	}
	names, verb := strings.Join(set, ", "), "is"
	if len(set) > 1 {
		verb = "are"
	}
	return fmt.Errorf("%s %s set but PIMGUARD_TENANT_ID is not: set PIMGUARD_TENANT_ID for real mode, or unset %s for the demo", names, verb, names)
}

// checkListenAddr validates the address the server will listen on, taken
// from source (PIMGUARD_ADDR, or -addr which overrides it). In demo mode the
// host must be a loopback IP or "localhost": the demo's /demo routes hand
// out administrators' tokens to anyone who asks, so nothing off this machine
// may reach them. An empty host (":8080") listens on every interface and is
// refused too. Real mode listens wherever it is told.
func (c config) checkListenAddr(source string) error {
	host, err := listenHost(source, c.Addr)
	if err != nil || !c.Demo() || graphcheck.IsLoopbackHost(host) {
		return err
	}
	return fmt.Errorf("%s: %q is not a loopback address: the demo mints administrators' tokens for anyone who can reach it, "+
		"so it listens on 127.0.0.1, [::1] or localhost only", source, c.Addr)
}

// listenHost returns addr's host, or an error naming source when addr is not
// host:port.
func listenHost(source, addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s: %q is not host:port: %v", source, addr, err)
	}
	return host, nil
}

// loadConfig reads and validates the configuration. Every error names the
// variable at fault: the program must never start half-configured.
func loadConfig(getenv func(string) string) (config, error) {
	rawTenant := getenv("PIMGUARD_TENANT_ID")
	if strings.TrimSpace(rawTenant) == "" {
		if rawTenant != "" {
			// Set, but to blanks: a secret that expanded to nothing,
			// never a request for the demo.
			return config{}, fmt.Errorf("PIMGUARD_TENANT_ID: %q is not a tenant ID (GUID)", rawTenant)
		}
		if err := checkMode(getenv); err != nil {
			return config{}, err
		}
	}
	c := config{
		TenantID:      strings.TrimSpace(rawTenant),
		Authority:     orDefault(getenv("PIMGUARD_AUTHORITY"), "https://login.microsoftonline.com"),
		GraphURL:      orDefault(getenv("PIMGUARD_GRAPH_URL"), "https://graph.microsoft.com/v1.0"),
		GraphAuth:     orDefault(getenv("PIMGUARD_GRAPH_AUTH"), "azure"),
		AuditorsGroup: strings.TrimSpace(getenv("PIMGUARD_AUDITORS_GROUP")),
		Addr:          orDefault(getenv("PIMGUARD_ADDR"), "127.0.0.1:8080"),
	}
	var err error
	if c.CacheTTL, err = duration(getenv, "PIMGUARD_CACHE_TTL", 30*time.Second, false); err != nil {
		return c, err
	}
	if c.NegativeTTL, err = duration(getenv, "PIMGUARD_NEGATIVE_TTL", 5*time.Second, false); err != nil {
		return c, err
	}
	if c.MaxStale, err = duration(getenv, "PIMGUARD_MAX_STALE", 0, true); err != nil {
		return c, err
	}
	if err := unmarshalVar(getenv, "PIMGUARD_CLAIMS_POLICY", &c.ClaimsPolicy); err != nil {
		return c, err
	}
	if err := unmarshalVar(getenv, "PIMGUARD_ACCOUNT_CHECKS", &c.AccountChecks); err != nil {
		return c, err
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("PIMGUARD_PREFLIGHT"))); v {
	case "":
		c.Preflight = !c.Demo()
	case "on", "true", "1":
		c.Preflight = true
	case "off", "false", "0":
	default:
		return c, fmt.Errorf("PIMGUARD_PREFLIGHT: %q is neither on nor off", v)
	}
	if c.AuditorsGroup != "" && !graphcheck.IsGUID(c.AuditorsGroup) {
		return c, fmt.Errorf("PIMGUARD_AUDITORS_GROUP: %q is not a group object ID (GUID)", c.AuditorsGroup)
	}
	if _, err := listenHost("PIMGUARD_ADDR", c.Addr); err != nil {
		return c, err
	}
	if c.RedisURL, c.SharedKey, err = fleetVars(getenv); err != nil {
		return c, err
	}
	if c.DeleteAuthContext, err = authContextVar(getenv, "PIMGUARD_DELETE_AUTH_CONTEXT"); err != nil {
		return c, err
	}
	switch c.SourceMode = strings.ToLower(strings.TrimSpace(getenv("PIMGUARD_SOURCE_MODE"))); c.SourceMode {
	case "":
		c.SourceMode = sourcePrincipal
	case sourcePrincipal, sourceSnapshot:
	default:
		return c, fmt.Errorf("PIMGUARD_SOURCE_MODE: %q is neither %s nor %s", c.SourceMode, sourcePrincipal, sourceSnapshot)
	}
	if c.Demo() {
		return c, nil
	}

	// Real mode.
	if !graphcheck.IsGUID(c.TenantID) {
		return c, fmt.Errorf("PIMGUARD_TENANT_ID: %q is not a tenant ID (GUID)", c.TenantID)
	}
	c.TenantID = strings.ToLower(c.TenantID)
	for _, a := range strings.Split(getenv("PIMGUARD_AUDIENCES"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Audiences = append(c.Audiences, a)
		}
	}
	if len(c.Audiences) == 0 {
		return c, fmt.Errorf("PIMGUARD_AUDIENCES: required in real mode (the API's client ID and App ID URI, comma-separated)")
	}
	if err := checkBaseURL(c.Authority); err != nil {
		return c, fmt.Errorf("PIMGUARD_AUTHORITY: %v", err)
	}
	if err := checkBaseURL(c.GraphURL); err != nil {
		return c, fmt.Errorf("PIMGUARD_GRAPH_URL: %v", err)
	}
	switch c.GraphAuth {
	case "azure":
	case "none":
		if !isLoopbackURL(c.GraphURL) {
			return c, fmt.Errorf("PIMGUARD_GRAPH_AUTH: none is only allowed with a loopback PIMGUARD_GRAPH_URL, not %q", c.GraphURL)
		}
	default:
		return c, fmt.Errorf("PIMGUARD_GRAPH_AUTH: %q is neither azure nor none", c.GraphAuth)
	}
	return c, nil
}

// fleetVars reads PIMGUARD_REDIS_URL and PIMGUARD_SHARED_KEY, which are
// set together or not at all. Neither the key nor the URL's userinfo (an
// ACL password) appears in an error: a key is described by its length.
func fleetVars(getenv func(string) string) (string, redisstore.Key, error) {
	rawURL, rawKey := getenv("PIMGUARD_REDIS_URL"), getenv("PIMGUARD_SHARED_KEY")
	redisURL, keyText := strings.TrimSpace(rawURL), strings.TrimSpace(rawKey)
	switch {
	case rawURL == "" && rawKey == "":
		return "", nil, nil
	case rawURL == "":
		return "", nil, errors.New("PIMGUARD_SHARED_KEY is set but PIMGUARD_REDIS_URL is not: set PIMGUARD_REDIS_URL for fleet mode, or unset PIMGUARD_SHARED_KEY")
	case redisURL == "":
		// A secret that expanded to nothing must not quietly turn
		// fleet mode off.
		return "", nil, errors.New("PIMGUARD_REDIS_URL: set to blanks; set it to a URL such as redis://127.0.0.1:6379/0, or unset it")
	}
	if err := redisstore.CheckURL(redisURL); err != nil {
		return "", nil, fmt.Errorf("PIMGUARD_REDIS_URL: %v", err)
	}
	if keyText == "" {
		return "", nil, fmt.Errorf("PIMGUARD_SHARED_KEY: required with PIMGUARD_REDIS_URL: at least %d random bytes in base64, "+
			"the same on every replica (generate one with openssl rand -base64 32)", redisstore.MinKeySize)
	}
	key, err := redisstore.ParseKey(keyText)
	if err != nil {
		return "", nil, fmt.Errorf("PIMGUARD_SHARED_KEY: %v", strings.TrimPrefix(err.Error(), "redisstore: "))
	}
	return redisURL, key, nil
}

// authContextVar reads the variable name as a Conditional Access
// authentication context ID, c1 to c99; unset is none. Blanks are refused:
// a value that expanded to nothing must not quietly turn a step-up off.
func authContextVar(getenv func(string) string, name string) (string, error) {
	raw := getenv(name)
	v := strings.TrimSpace(raw)
	switch {
	case raw == "":
		return "", nil
	case v == "":
		return "", fmt.Errorf("%s: set to blanks; set it to an authentication context ID (c1 to c99), or unset it", name)
	case middleware.AuthContext(v).Validate() != nil:
		return "", fmt.Errorf("%s: %.20q is not an authentication context ID (c1 to c99, as in Entra's Conditional Access)", name, v)
	}
	return v, nil
}

// unmarshalVar reads the variable name into v with v's UnmarshalText, the
// one way middleware's configuration types parse themselves.
func unmarshalVar(getenv func(string) string, name string, v encoding.TextUnmarshaler) error {
	if err := v.UnmarshalText([]byte(getenv(name))); err != nil {
		return fmt.Errorf("%s: %v", name, strings.TrimPrefix(err.Error(), "middleware: "))
	}
	return nil
}

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v == "" {
		return def
	}
	return v
}

func duration(getenv func(string) string, name string, def time.Duration, zeroOK bool) (time.Duration, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil && v == "0" {
		d, err = 0, nil
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s: %q is not a duration such as 30s or 2m", name, v)
	case d < 0 || (d == 0 && !zeroOK):
		return 0, fmt.Errorf("%s: %q must be positive", name, v)
	}
	return d, nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	if u.Scheme == "https" || (u.Scheme == "http" && isLoopbackURL(s)) {
		return nil
	}
	return fmt.Errorf("%q must be https (plain http only on loopback)", s)
}

func isLoopbackURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && graphcheck.IsLoopbackHost(u.Hostname())
}
