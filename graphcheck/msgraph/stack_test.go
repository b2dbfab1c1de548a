package msgraph_test

// The one integration fixture of msgraph's tests: a fake tenant on a fake
// clock, a real msgraph.Source reading it through the SDK, and, unless a
// test asks for the Source alone, an Authenticator for the tenant and a
// Guard over the Source. The Source tests (newEnv), the enforcement tests,
// the fault matrix, the performance figures and benchmarks, and the soak
// all build on newStack, so the wiring exists once.

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/graphtest"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/internal/syncio"
	"github.com/pimguard/pimguard/middleware"
)

const (
	// stackTokenLifetime is the lifetime of a token stack.mint issues
	// unless told otherwise: long enough for every test's clock jumps.
	stackTokenLifetime = 12 * time.Hour
	// decisionMsg is the message of the Guard's decision records.
	decisionMsg = "pimguard: authorization decision"
)

// stackOptions configures newStack. The zero value is the test directory
// (seedDirectory) in a fake tenant on a fake clock at t0, a Source with
// fakeCredential, every log record kept in stack.logs, and an
// Authenticator and a Guard in front.
type stackOptions struct {
	// start is the fake clock's start; zero means t0.
	start time.Time
	// clock, when set, is used instead of a new clock at start, so that
	// several stacks (the soak's tenants) share one.
	clock *graphtest.Clock
	// tenant configures the fake tenant; newStack sets its Clock.
	tenant graphtest.Options
	// bare leaves the tenant's directory empty: the test seeds its own.
	bare bool
	// anonymous makes the Source send no token
	// (Config.InsecureNoCredential); stack.cred is then nil.
	anonymous bool
	// graphToken is the token the Source's fakeCredential hands out;
	// empty means fakeToken.
	graphToken string
	// quiet discards every log record instead of keeping them in
	// stack.logs (benchmarks, and runs too large to keep them).
	quiet bool
	// graph edits the Source's Config before msgraph.New; stack.cfg keeps
	// the result, from which newSource starts.
	graph func(*stack, *msgraph.Config)
	// sourceOnly leaves out the Authenticator and the Guard.
	sourceOnly bool
	// guard edits the GuardConfig (stack.gcfg) that the stack's Guard and
	// newGuard start from.
	guard func(*middleware.GuardConfig)
}

// stack is a fake tenant, a Source reading it, and (unless sourceOnly) an
// Authenticator and a Guard over that Source, all on one fake clock. The
// Source's retry waits are recorded and return at once: tests never sleep.
type stack struct {
	t      testing.TB
	clock  *graphtest.Clock
	srv    *graphtest.Server
	cred   *fakeCredential // nil when anonymous
	sleep  *sleeper
	logs   *syncio.Buffer // JSON log records of every component, unless quiet
	logger *slog.Logger
	cfg    msgraph.Config // the Source's Config, as given to msgraph.New
	src    *msgraph.Source

	auth  *middleware.Authenticator // nil when sourceOnly
	gcfg  middleware.GuardConfig    // as given to NewGuard (before its defaults)
	guard *middleware.Guard         // nil when sourceOnly

	served atomic.Int64 // calls of the handler behind send

	mu     sync.Mutex
	tokens []string // every token minted, to check the logs never show one
}

// newStack starts a fake tenant as o says, a real msgraph.Source reading
// it and, unless o.sourceOnly, an Authenticator for the tenant and a Guard
// over the Source. Unless o.quiet, the test fails at its end if any log
// record holds a token the stack minted or its Graph token.
func newStack(tb testing.TB, o stackOptions) *stack {
	tb.Helper()
	s := &stack{t: tb, clock: o.clock, sleep: &sleeper{}}
	if s.clock == nil {
		s.clock = graphtest.NewClock(cmp.Or(o.start, t0))
	}
	s.logger = slog.New(slog.DiscardHandler)
	if !o.quiet {
		s.logs = &syncio.Buffer{}
		s.logger = slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	o.tenant.Clock = s.clock
	s.srv = graphtest.NewServer(o.tenant)
	tb.Cleanup(s.srv.Close)
	if !o.bare {
		seedDirectory(tb, s.srv)
	}

	s.cfg = msgraph.Config{
		BaseURL: s.srv.GraphURL(),
		Now:     s.clock.Now,
		Sleep:   s.sleep.Sleep,
		Logger:  s.logger.With("component", "msgraph"),
	}
	if o.anonymous {
		s.cfg.InsecureNoCredential = true
	} else {
		s.cred = &fakeCredential{token: o.graphToken}
		s.cfg.Credential = s.cred
	}
	if o.graph != nil {
		o.graph(s, &s.cfg)
	}
	s.src = s.newSource(tb, nil)

	s.gcfg = middleware.GuardConfig{Source: s.src, Now: s.clock.Now, Logger: s.logger.With("component", "guard")}
	if !o.quiet {
		s.gcfg.AllowLogLevel = slog.LevelInfo // every decision on the record
	}
	if o.guard != nil {
		o.guard(&s.gcfg)
	}
	if !o.sourceOnly {
		tenants := o.tenant.Tenants
		if len(tenants) == 0 {
			tenants = []string{graphtest.TenantID}
		}
		var err error
		s.auth, err = middleware.NewAuthenticator(context.Background(), middleware.AuthenticatorConfig{
			Tenants:   tenants,
			Audiences: []string{graphtest.APIClientID},
			Authority: s.srv.URL,
			Now:       s.clock.Now,
			Logger:    s.logger.With("component", "authenticator"),
		})
		if err != nil {
			tb.Fatalf("NewAuthenticator: %v", err)
		}
		s.guard = s.newGuard(tb, nil)
	}
	if !o.quiet {
		tb.Cleanup(s.checkLogsHoldNoToken)
	}
	return s
}

// newEnv is the Source-only layer of newStack, for the Source's own tests:
// the test directory in a fake tenant with opts, and a Source with a fake
// credential whose Config edit adjusts.
func newEnv(tb testing.TB, opts graphtest.Options, edit func(*stack, *msgraph.Config)) *stack {
	tb.Helper()
	return newStack(tb, stackOptions{tenant: opts, graph: edit, sourceOnly: true})
}

// newSource returns another Source on the stack's Config, edited by edit;
// it stops tb (the test or subtest asking) if msgraph.New refuses.
func (s *stack) newSource(tb testing.TB, edit func(*msgraph.Config)) *msgraph.Source {
	tb.Helper()
	src, err := msgraph.New(edited(s.cfg, edit))
	if err != nil {
		tb.Fatalf("msgraph.New: %v", err)
	}
	return src
}

// newGuard returns another Guard on the stack's GuardConfig (over the
// stack's Source and clock), edited by edit; it stops tb if NewGuard
// refuses.
func (s *stack) newGuard(tb testing.TB, edit func(*middleware.GuardConfig)) *middleware.Guard {
	tb.Helper()
	g, err := middleware.NewGuard(edited(s.gcfg, edit))
	if err != nil {
		tb.Fatalf("NewGuard: %v", err)
	}
	return g
}

// edited returns a copy of cfg changed by edit (nil: unchanged).
func edited[C any](cfg C, edit func(*C)) C {
	if edit != nil {
		edit(&cfg)
	}
	return cfg
}

// bearer is a minted access token and its expiry.
type bearer struct {
	raw string
	exp time.Time
}

// mint signs an access token issued now, valid for stackTokenLifetime
// unless tok says otherwise, and remembers it for the log check.
func (s *stack) mint(tok graphtest.Token) bearer {
	s.t.Helper()
	if tok.IssuedAt.IsZero() {
		tok.IssuedAt = s.clock.Now()
	}
	if tok.Lifetime == 0 {
		tok.Lifetime = stackTokenLifetime
	}
	raw, err := s.srv.Mint(tok)
	if err != nil {
		s.t.Fatalf("Mint: %v", err)
	}
	s.mu.Lock()
	s.tokens = append(s.tokens, raw)
	s.mu.Unlock()
	return bearer{raw: raw, exp: tok.IssuedAt.Add(tok.Lifetime)}
}

// rejectionBody is the JSON body of a rejection.
type rejectionBody struct {
	Error       string   `json:"error"`
	Description string   `json:"error_description"`
	Code        string   `json:"code"`
	Required    []string `json:"required"`
	EndedAt     string   `json:"ended_at"`
}

// result is one served request.
type result struct {
	status  int
	header  http.Header
	raw     string
	body    rejectionBody // decoded for non-200 answers
	bodyErr error         // why body could not be decoded
	called  bool          // the protected handler ran
	latency time.Duration // wall time of ServeHTTP
}

// send serves one GET /api/admin carrying the bearer token raw through the
// Authenticator and mw (a Guard's Require or Load) to a handler that
// counts its calls and reports an error if the live state is missing from
// its context. send stops no test: the caller judges the answer, so
// subtests of a shared stack may call it.
func (s *stack) send(mw func(http.Handler) http.Handler, raw string) result {
	var called bool
	h := s.auth.Handler(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		s.served.Add(1)
		if _, ok := middleware.LiveStateFromContext(r.Context()); !ok {
			s.t.Error("handler reached without the live state in its context")
		}
		_, _ = io.WriteString(w, "ok")
	})))
	req := httptest.NewRequest(http.MethodGet, "/api/admin", nil)
	req.Header.Set("Authorization", "Bearer "+raw)
	rec := httptest.NewRecorder()
	start := time.Now()
	h.ServeHTTP(rec, req)
	res := result{status: rec.Code, header: rec.Header(), raw: rec.Body.String(), called: called, latency: time.Since(start)}
	if rec.Code != http.StatusOK {
		res.bodyErr = json.Unmarshal(rec.Body.Bytes(), &res.body)
	}
	return res
}

// run is send for a token that must still be valid and an answer that
// must be 200 or a JSON rejection.
func (s *stack) run(mw func(http.Handler) http.Handler, tok bearer) result {
	s.t.Helper()
	if !s.clock.Now().Before(tok.exp) {
		s.t.Fatalf("test bug: the token expired at %v (now %v)", tok.exp, s.clock.Now())
	}
	res := s.send(mw, tok.raw)
	if res.bodyErr != nil {
		s.t.Fatalf("rejection body %q: %v", res.raw, res.bodyErr)
	}
	return res
}

// with serves one request through g.Require(req).
func (s *stack) with(g *middleware.Guard, req middleware.Requirement, tok bearer) result {
	s.t.Helper()
	return s.run(g.Require(req), tok)
}

// allowed checks that the stack's Guard lets tok through req now.
func (s *stack) allowed(step string, req middleware.Requirement, tok bearer) {
	s.t.Helper()
	s.expect(step, s.with(s.guard, req, tok), http.StatusOK, "")
}

// denied checks that the stack's Guard refuses tok for req now with status
// and code, and returns the answer.
func (s *stack) denied(step string, req middleware.Requirement, tok bearer, status int, code string) result {
	s.t.Helper()
	res := s.with(s.guard, req, tok)
	s.expect(step, res, status, code)
	return res
}

// expect checks an answer: 200 with the handler called, or the rejection
// status and code without it, with the headers each rejection must carry.
func (s *stack) expect(step string, res result, status int, code string) {
	s.t.Helper()
	if status == http.StatusOK {
		if res.status != http.StatusOK || !res.called {
			s.t.Fatalf("%s at %v: %d %s (handler called: %v), want 200", step, s.clock.Now(), res.status, strings.TrimSpace(res.raw), res.called)
		}
		return
	}
	if res.status != status || res.body.Code != code || res.called {
		s.t.Fatalf("%s at %v: %d %s (handler called: %v), want %d %s", step, s.clock.Now(), res.status, strings.TrimSpace(res.raw), res.called, status, code)
	}
	switch status {
	case http.StatusForbidden:
		if ch := res.header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="insufficient_scope"`) {
			s.t.Errorf("%s: WWW-Authenticate %q lacks insufficient_scope", step, ch)
		}
	case http.StatusServiceUnavailable:
		ra := s.gcfg.RetryAfter
		if ra == 0 {
			ra = middleware.DefaultPIMRetryAfter
		}
		if got, want := res.header.Get("Retry-After"), strconv.Itoa(int((ra+time.Second-1)/time.Second)); got != want {
			s.t.Errorf("%s: Retry-After %q, want %q", step, got, want)
		}
	}
}

// lookup asks the stack's Source for p's state directly.
func (s *stack) lookup(p graphcheck.Principal) (*graphcheck.State, error) {
	s.t.Helper()
	st, err := s.src.Lookup(context.Background(), p)
	if err != nil && st != nil {
		s.t.Errorf("Lookup returned a State with error %v", err)
	}
	return st, err
}

func (s *stack) mustLookup(p graphcheck.Principal) *graphcheck.State {
	s.t.Helper()
	st, err := s.lookup(p)
	if err != nil {
		s.t.Fatalf("Lookup(%s): %v", p.ObjectID, err)
	}
	return st
}

// countRequests counts the requests on the tenant's log that match.
func (s *stack) countRequests(match func(graphtest.Request) bool) int {
	n := 0
	for _, r := range s.srv.Requests() {
		if match(r) {
			n++
		}
	}
	return n
}

// roundTrips counts real HTTP requests to the tenant, sign-in half
// included (not $batch sub-requests).
func (s *stack) roundTrips() int {
	return s.countRequests(func(r graphtest.Request) bool { return r.BatchID == "" })
}

// graphHTTPRequests counts every HTTP request to the Graph half, $batch or
// not, without sub-requests.
func (s *stack) graphHTTPRequests() int {
	return s.countRequests(func(r graphtest.Request) bool { return r.BatchID == "" && strings.HasPrefix(r.Path, "/v1.0/") })
}

// graphLookups counts the $batch HTTP requests Graph received: one per
// Source lookup of a principal outside role-assignable groups. $batch
// sub-requests, recorded with a BatchID, are not counted.
func (s *stack) graphLookups() int {
	return s.countRequests(func(r graphtest.Request) bool {
		return r.BatchID == "" && r.Method == http.MethodPost && r.Path == "/v1.0/$batch"
	})
}

// subRequests counts $batch sub-requests by path prefix below /v1.0.
func (s *stack) subRequests(prefix string) int {
	return s.countRequests(func(r graphtest.Request) bool { return r.BatchID != "" && strings.HasPrefix(r.Path, "/v1.0"+prefix) })
}

func (s *stack) wantLookups(step string, want int) {
	s.t.Helper()
	if n := s.graphLookups(); n != want {
		s.t.Errorf("%s: %d Graph $batch requests, want %d", step, n, want)
	}
}

// batches returns the sub-requests of each $batch, in order.
func (s *stack) batches() [][]graphtest.Request {
	var out [][]graphtest.Request
	for _, r := range s.srv.Requests() {
		switch {
		case r.BatchID == "":
			out = append(out, nil)
		case len(out) > 0:
			out[len(out)-1] = append(out[len(out)-1], r)
		}
	}
	return out
}

// decisions returns the Guard's decision records, oldest first.
func (s *stack) decisions() []map[string]any {
	s.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			s.t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == decisionMsg {
			out = append(out, m)
		}
	}
	return out
}

// lastDecision returns the latest decision record.
func (s *stack) lastDecision() map[string]any {
	s.t.Helper()
	d := s.decisions()
	if len(d) == 0 {
		s.t.Fatal("no decision record")
	}
	return d[len(d)-1]
}

// checkLogsHoldNoToken fails the test if any log line holds a minted token
// or the Source's Graph token, whole or its signature.
func (s *stack) checkLogsHoldNoToken() {
	logs := s.logs.String()
	s.mu.Lock()
	tokens := append([]string(nil), s.tokens...)
	s.mu.Unlock()
	if s.cred != nil {
		tokens = append(tokens, s.cred.Token())
	}
	for _, tok := range tokens {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(logs, tok) || strings.Contains(logs, sig) {
			s.t.Error("a token reached the logs")
		}
	}
}

// fakeCredential is an azcore.TokenCredential that hands out a fixed token
// (fakeToken unless token is set) and records the scopes it was asked for.
type fakeCredential struct {
	token  string
	mu     sync.Mutex
	scopes [][]string
}

// Token returns the token the credential hands out.
func (c *fakeCredential) Token() string {
	if c.token == "" {
		return fakeToken
	}
	return c.token
}

func (c *fakeCredential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, append([]string(nil), opts.Scopes...))
	return azcore.AccessToken{Token: c.Token(), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (c *fakeCredential) requested() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.scopes...)
}

// sleeper records the waits a Source asks for and returns at once: tests
// never sleep.
type sleeper struct {
	mu     sync.Mutex
	waits  []time.Duration
	result error // returned instead of nil when set
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.result
}

// slept returns the waits asked for so far.
func (s *sleeper) slept() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// take returns the waits asked for since the last take and forgets them.
func (s *sleeper) take() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.waits
	s.waits = nil
	return w
}
