package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/breaker"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/internal/prommetrics"
	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

// appConfig is everything newApp needs, whichever mode produced it.
type appConfig struct {
	auth          middleware.AuthenticatorConfig
	graph         msgraph.Config
	guard         middleware.GuardConfig // Source is set by newApp
	auditorsGroup string
	preflight     bool // Guard.Preflight before serving
	// users seeds the in-memory directory the helpdesk actions look their
	// target up in and act on (the demo). Nil (real mode): they look the
	// target up in Graph (msgraph's Source.User) and change nothing in the
	// tenant, answering what they would have done.
	users map[string]directoryUser
	// deleteAuthContext, when set, is the authentication context (c1 to
	// c99) DELETE /api/users/{id} also requires (middleware.AuthContext).
	deleteAuthContext string
	now               func() time.Time
	extraRoutes       func(chi.Router) // demo controls

	// fleet is the Redis store of fleet mode, made by newApp (which sets
	// its Logger, MeterProvider and Now) and used as guard.Shared and
	// graph.TenantLimits. An empty URL means no fleet mode.
	fleet redisstore.Config
	// snapshot, when set, makes newApp read PIM state through a
	// msgraph.Snapshot over the Graph source (PIMGUARD_SOURCE_MODE=snapshot);
	// nil: one lookup per principal.
	snapshot *msgraph.SnapshotConfig
}

// realAppConfig maps the validated environment onto the library's configs.
func realAppConfig(cfg config) appConfig {
	ac := appConfig{
		auth: middleware.AuthenticatorConfig{
			Tenants:   []string{cfg.TenantID},
			Audiences: cfg.Audiences,
			Authority: cfg.Authority,
			// Start while Entra is unreachable instead of crash-looping:
			// until the keys are fetched, requests get 503
			// token_keys_unavailable and /readyz says why.
			DiscoverInBackground: true,
		},
		graph: msgraph.Config{
			BaseURL:              cfg.GraphURL,
			InsecureNoCredential: cfg.GraphAuth == "none",
		},
		fleet:             fleetConfig(cfg),
		auditorsGroup:     cfg.AuditorsGroup,
		preflight:         cfg.Preflight,
		deleteAuthContext: cfg.DeleteAuthContext,
		now:               time.Now,
		snapshot:          snapshotConfig(cfg, cfg.AuditorsGroup),
	}
	ac.guard = guardConfig(cfg)
	return ac
}

func guardConfig(cfg config) middleware.GuardConfig {
	g := middleware.GuardConfig{CacheTTL: cfg.CacheTTL, NegativeTTL: cfg.NegativeTTL, MaxStale: cfg.MaxStale,
		AccountChecks: cfg.AccountChecks, ClaimsPolicy: cfg.ClaimsPolicy}
	if cfg.SourceMode == sourceSnapshot {
		// A state built from a snapshot is cached like any other, so the
		// sweep and the cache share PIMGUARD_CACHE_TTL: a deactivation is
		// still honoured for at most that long.
		g.CacheTTL = cfg.CacheTTL / 2
		g.NegativeTTL = min(g.NegativeTTL, g.CacheTTL)
	}
	return g
}

// snapshotConfig is the snapshot of PIMGUARD_SOURCE_MODE=snapshot, nil in
// the default per-principal mode. It sweeps every CacheTTL / 2 (see
// guardConfig) and reads the PIM-for-Groups instances of groups: the
// Guard's Require calls name theirs too (through the circuit breaker),
// but only as routes are built.
func snapshotConfig(cfg config, groups ...string) *msgraph.SnapshotConfig {
	if cfg.SourceMode != sourceSnapshot {
		return nil
	}
	return &msgraph.SnapshotConfig{SweepInterval: cfg.CacheTTL / 2, MaxStale: cfg.MaxStale,
		Groups: slices.DeleteFunc(groups, func(g string) bool { return g == "" })}
}

// fleetConfig is cfg's fleet-mode store configuration; its URL is empty
// without PIMGUARD_REDIS_URL.
func fleetConfig(cfg config) redisstore.Config {
	return redisstore.Config{URL: cfg.RedisURL, Key: cfg.SharedKey}
}

// app is the helpdesk API: pimguard in front of a directory of users.
type app struct {
	auth  *middleware.Authenticator
	guard *middleware.Guard
	// users is where the helpdesk actions look their target up: the
	// in-memory directory (demo) or Graph (real mode).
	users graphcheck.UserDirectory
	// dir holds the audit log and, in demo mode, the users the actions
	// act on.
	dir           *directory
	canDelete     middleware.Requirement
	auditorsGroup string
	now           func() time.Time
	logger        *slog.Logger
	extraRoutes   func(chi.Router)
	metrics       http.Handler      // GET /metrics, Prometheus text format
	fleet         *redisstore.Store // nil without fleet mode
}

// newApp builds the app. In fleet mode it connects to Redis (not an error
// when Redis is unreachable: the app then works alone until it is back);
// [app.Close] disconnects, and stops the Authenticator's background work.
func newApp(ctx context.Context, ac appConfig, logger *slog.Logger) (_ *app, err error) {
	if ac.now == nil {
		ac.now = time.Now
	}
	canDelete := canDeleteUsers
	if ac.deleteAuthContext != "" {
		// The role first: a caller without it is told so (403) rather
		// than asked to step up for nothing.
		canDelete = middleware.AllOf(canDeleteUsers, middleware.AuthContext(ac.deleteAuthContext))
		if err := canDelete.Validate(); err != nil {
			return nil, err
		}
	}
	m, err := prommetrics.New()
	if err != nil {
		return nil, err
	}
	ac.auth.Logger, ac.auth.Now, ac.auth.MeterProvider = logger, ac.now, m.Provider
	auth, err := middleware.NewAuthenticator(ctx, ac.auth)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = auth.Close()
		}
	}()
	var fleet *redisstore.Store
	if ac.fleet.URL != "" {
		ac.fleet.Logger, ac.fleet.MeterProvider, ac.fleet.Now = logger, m.Provider, ac.now
		if fleet, err = redisstore.New(ac.fleet); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				_ = fleet.Close()
			}
		}()
		ac.guard.Shared, ac.graph.TenantLimits = fleet, fleet
		logger.Info("example: fleet mode on: the replicas share their Graph lookups, purges and Graph limits on Redis",
			"redis", redisstore.RedactURL(ac.fleet.URL), "connected", fleet.Connected())
	}
	ac.graph.Logger, ac.graph.Now, ac.graph.MeterProvider = logger, ac.now, m.Provider
	src, err := msgraph.New(ac.graph)
	if err != nil {
		return nil, err
	}
	var pim graphcheck.Source = src
	if ac.snapshot != nil {
		if fleet != nil {
			ac.snapshot.Store = fleet // one replica sweeps a tenant at a time; the others read its snapshot
		}
		sn, err := msgraph.NewSnapshot(src, *ac.snapshot)
		if err != nil {
			return nil, err
		}
		pim = sn
		logger.Info("example: snapshot mode: roles and groups come from a tenant-wide snapshot of PIM state, not from a Graph lookup per principal",
			"sweep_interval", ac.snapshot.SweepInterval.String(), "cache_ttl", ac.guard.CacheTTL.String())
	}
	// During a Graph outage, the lookups of each tenant fail fast (503
	// pim_unavailable at once, one probe per cool-down) once its breaker
	// opens, and /readyz says so.
	// The handlers' reads of target users go through the same breakers.
	guarded := breaker.New(pim, breaker.Config{Logger: logger, MeterProvider: m.Provider})
	ac.guard.Source = guarded
	ac.guard.Logger, ac.guard.Now, ac.guard.MeterProvider = logger, ac.now, m.Provider
	guard, err := middleware.NewGuard(ac.guard)
	if err != nil {
		return nil, err
	}
	tenant := ""
	if len(ac.auth.Tenants) > 0 {
		tenant = ac.auth.Tenants[0]
	}
	dir := newDirectory(ac.now, tenant, ac.users)
	var users graphcheck.UserDirectory = dir
	if !dir.ownsUsers() {
		users = guarded
	}
	if ac.preflight {
		// A missing Graph permission or licence stops the service here,
		// naming what to grant, instead of answering 503 to every request.
		if err := guard.Preflight(ctx); err != nil {
			return nil, err
		}
		if !dir.ownsUsers() {
			// The helpdesk actions read the target user and its
			// administrative units (AdministrativeUnit.Read.All).
			if err := src.Preflight(ctx, graphcheck.NeedAdministrativeUnits); err != nil {
				return nil, fmt.Errorf("preflight of the helpdesk's user lookups: %w", err)
			}
		}
		logger.Info("example: preflight passed", "account_checks", ac.guard.AccountChecks.String())
	}
	return &app{
		auth: auth, guard: guard, users: users, dir: dir, canDelete: canDelete, auditorsGroup: ac.auditorsGroup,
		now: ac.now, logger: logger, extraRoutes: ac.extraRoutes, metrics: m.Handler, fleet: fleet,
	}, nil
}

// Close releases what the app holds besides its handlers: the
// Authenticator's background work (discovery retries, key-set refreshes)
// and, in fleet mode, the Redis store's connections and goroutines. Call
// it once the server has stopped serving.
func (a *app) Close() error {
	err := a.auth.Close()
	if a.fleet != nil {
		err = errors.Join(err, a.fleet.Close())
	}
	return err
}

// Requirements of the protected routes. Resetting a password is decided
// in the handler, once the target user's administrative units are known
// (resetRequirement); canResetPasswords is its tenant-wide part.
var (
	resetRoles        = []string{middleware.RoleHelpdeskAdministrator, middleware.RoleUserAdministrator}
	canResetPasswords = middleware.AnyOf(
		middleware.Role(middleware.RoleHelpdeskAdministrator),
		middleware.Role(middleware.RoleUserAdministrator),
	)
	canDeleteUsers = middleware.Role(middleware.RoleUserAdministrator)
	canPurge       = middleware.Role(middleware.RolePrivilegedRoleAdministrator)
)

// resetRequirement is who may reset u's password: a Helpdesk or User
// Administrator tenant-wide, or scoped to an administrative unit that
// holds u.
func resetRequirement(u *graphcheck.DirectoryUser) middleware.Requirement {
	reqs := make([]middleware.Requirement, 0, len(resetRoles)*(1+len(u.AdministrativeUnits)))
	for _, role := range resetRoles {
		reqs = append(reqs, middleware.Role(role))
	}
	for _, au := range u.AdministrativeUnits {
		for _, role := range resetRoles {
			reqs = append(reqs, middleware.RoleInScope(role, middleware.AdministrativeUnitScope(au)))
		}
	}
	return middleware.AnyOf(reqs...)
}

func (a *app) routes() http.Handler {
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
	})
	// Liveness: the process serves. It never depends on Entra or Graph,
	// so that an outage of theirs does not get the replica restarted.
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// Readiness: 503 naming what is not ready (signing keys not fetched
	// yet, a tenant's Graph lookups failed fast by its breaker), 200
	// otherwise. Unauthenticated, like /healthz: it names tenants and
	// states, no principal and no token.
	ready := middleware.ReadyHandler(a.auth, a.guard)
	r.Method(http.MethodGet, "/readyz", ready)
	r.Method(http.MethodHead, "/readyz", ready)
	// Unauthenticated, like most Prometheus endpoints: it carries counts,
	// no identities. Bind the service to an internal address, or put the
	// route behind your own network policy, if that matters.
	r.Method(http.MethodGet, "/metrics", a.metrics)
	r.Route("/api", func(r chi.Router) {
		r.Use(a.auth.Handler)
		r.With(a.guard.Load).Get("/me", a.me)
		// Decided in the handler (Guard.Check): the rule depends on the
		// target user's administrative units.
		r.With(a.guard.Load).Post("/users/{id}/reset-password", a.resetPassword)
		r.With(a.guard.Require(a.canDelete)).Delete("/users/{id}", a.deleteUser)
		if a.auditorsGroup != "" {
			r.With(a.guard.Require(middleware.GroupMember(a.auditorsGroup))).Get("/audit", a.audit)
		}
	})
	r.Route("/admin", func(r chi.Router) {
		r.Use(a.auth.Handler)
		r.With(a.guard.Require(canPurge)).Post("/purge/{oid}", a.purge)
	})
	if a.extraRoutes != nil {
		a.extraRoutes(r)
	}
	return r
}

// purge drops what pimguard has cached about a principal of the caller's
// tenant (its verified tokens and live state), so that a change in Entra
// (a deactivation, a disabled account) takes effect on the next request
// instead of within the cache TTL.
func (a *app) purge(w http.ResponseWriter, r *http.Request) {
	p, _ := middleware.PrincipalFromContext(r.Context())
	oid := chi.URLParam(r, "oid")
	if !graphcheck.IsGUID(oid) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_object_id", "objectId": oid})
		return
	}
	middleware.Purgers{a.auth, a.guard}.Purge(p.TenantID, oid)
	a.logger.InfoContext(r.Context(), "example: purged", "tenant", p.TenantID, "oid", strings.ToLower(oid), "by", p.ObjectID)
	writeJSON(w, http.StatusOK, map[string]any{"tenantId": p.TenantID, "objectId": strings.ToLower(oid), "purged": true})
}

type roleJSON struct {
	RoleDefinitionID string  `json:"roleDefinitionId"`
	DirectoryScopeID string  `json:"directoryScopeId"`
	AssignmentType   string  `json:"assignmentType"`
	EndDateTime      *string `json:"endDateTime"`
	ViaGroupID       string  `json:"viaGroupId,omitempty"`
}

type groupJSON struct {
	GroupID     string  `json:"groupId"`
	AccessID    string  `json:"accessId"`
	EndDateTime *string `json:"endDateTime"`
}

type meJSON struct {
	TenantID string      `json:"tenantId"`
	ObjectID string      `json:"objectId"`
	Roles    []roleJSON  `json:"roles"`
	Groups   []groupJSON `json:"groups"`
}

// me answers with the caller's live state: what is active now, not what the
// token claimed when it was issued.
func (a *app) me(w http.ResponseWriter, r *http.Request) {
	p, _ := middleware.PrincipalFromContext(r.Context())
	s, _ := middleware.LiveStateFromContext(r.Context())
	now := a.now()
	out := meJSON{TenantID: p.TenantID, ObjectID: p.ObjectID, Roles: []roleJSON{}, Groups: []groupJSON{}}
	for _, ra := range s.ActiveRoles(now) {
		out.Roles = append(out.Roles, roleJSON{
			RoleDefinitionID: ra.RoleDefinitionID, DirectoryScopeID: ra.DirectoryScopeID,
			AssignmentType: ra.AssignmentType, EndDateTime: rfc3339(ra.End), ViaGroupID: ra.ViaGroupID,
		})
	}
	for _, g := range s.ActiveGroups(now) {
		out.Groups = append(out.Groups, groupJSON{GroupID: g.GroupID, AccessID: g.AccessID, EndDateTime: rfc3339(g.End)})
	}
	writeJSON(w, http.StatusOK, out)
}

// resetPassword resets the target user's password, for a Helpdesk or
// User Administrator tenant-wide or in an administrative unit that holds
// the target (resetRequirement). A caller who holds neither role in any
// scope is refused before the directory is asked, so that it can neither
// learn which users exist nor make the service call Graph.
func (a *app) resetPassword(w http.ResponseWriter, r *http.Request) {
	p, _ := middleware.PrincipalFromContext(r.Context())
	s, _ := middleware.LiveStateFromContext(r.Context())
	id := chi.URLParam(r, "id")
	if !holdsAnyRole(s, a.now(), resetRoles) {
		if rej := a.guard.Check(r, canResetPasswords); rej != nil {
			a.guard.WriteRejection(w, r, rej)
			return
		}
	}
	target, ok := a.lookUpTarget(w, r, p.TenantID, id)
	if !ok {
		return
	}
	if rej := a.guard.Check(r, resetRequirement(target)); rej != nil {
		a.guard.WriteRejection(w, r, rej)
		return
	}
	if !a.dir.ownsUsers() {
		a.dir.recordNotPerformed(p.ObjectID, "reset-password", target.ID)
		writeJSON(w, http.StatusOK, notPerformed(target, "set a temporary password and require a new one at the next sign-in"))
		return
	}
	temp, ok := a.dir.resetPassword(p.ObjectID, id)
	if !ok {
		a.writeUserNotFound(w, r) // deleted meanwhile
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"userId": id, "temporaryPassword": temp, "forceChangeAtNextSignIn": true, "performed": true})
}

// deleteUser deletes the target user, for a User Administrator
// tenant-wide (with PIMGUARD_DELETE_AUTH_CONTEXT, holding that
// authentication context too: Guard.Require in front decided).
func (a *app) deleteUser(w http.ResponseWriter, r *http.Request) {
	p, _ := middleware.PrincipalFromContext(r.Context())
	id := chi.URLParam(r, "id")
	target, ok := a.lookUpTarget(w, r, p.TenantID, id)
	if !ok {
		return
	}
	if !a.dir.ownsUsers() {
		a.dir.recordNotPerformed(p.ObjectID, "delete-user", target.ID)
		writeJSON(w, http.StatusOK, notPerformed(target, "delete the user"))
		return
	}
	if !a.dir.deleteUser(p.ObjectID, id) {
		a.writeUserNotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"userId": id, "deleted": true, "performed": true})
}

// holdsAnyRole reports whether s has one of roles active at now, in any
// directory scope.
func holdsAnyRole(s *graphcheck.State, now time.Time, roles []string) bool {
	for _, ra := range s.ActiveRoles(now) {
		for _, role := range roles {
			if strings.EqualFold(ra.RoleDefinitionID, role) {
				return true
			}
		}
	}
	return false
}

// Codes of the helpdesk actions' own refusals, written in the Guard's
// error format.
const (
	codeUserNotFound         = "user_not_found"
	codeDirectoryUnavailable = "directory_unavailable"
)

// directoryRetryAfter is the Retry-After of a 503 directory_unavailable.
const directoryRetryAfter = 5 * time.Second

// lookUpTarget looks the target user id of tenant up in the directory.
// When it cannot, it writes the refusal and returns false: 404
// user_not_found for a user the directory does not hold (or an ID that
// cannot be one), 503 directory_unavailable with Retry-After when Graph
// could not answer, 500 internal_error otherwise (a Graph permission
// missing: the log names it).
func (a *app) lookUpTarget(w http.ResponseWriter, r *http.Request, tenantID, id string) (*graphcheck.DirectoryUser, bool) {
	u, err := a.users.User(r.Context(), tenantID, id)
	switch {
	case err == nil:
		return u, true
	case errors.Is(err, graphcheck.ErrPrincipalNotFound), errors.Is(err, graphcheck.ErrInvalidPrincipal):
		a.writeUserNotFound(w, r)
	case errors.Is(err, graphcheck.ErrUnavailable):
		a.logger.WarnContext(r.Context(), "example: looking up the target user", "tenant", tenantID, "err", err)
		a.guard.WriteRejection(w, r, &middleware.Rejection{Status: http.StatusServiceUnavailable, Code: codeDirectoryUnavailable,
			Description: "The directory cannot be read now; try again shortly.", RetryAfter: directoryRetryAfter, Err: err})
	default:
		a.logger.ErrorContext(r.Context(), "example: looking up the target user", "tenant", tenantID, "err", err)
		a.guard.WriteRejection(w, r, &middleware.Rejection{Status: http.StatusInternalServerError, Code: middleware.CodeInternal,
			Description: "Internal error.", Err: err})
	}
	return nil, false
}

func (a *app) writeUserNotFound(w http.ResponseWriter, r *http.Request) {
	a.guard.WriteRejection(w, r, &middleware.Rejection{Status: http.StatusNotFound, Code: codeUserNotFound,
		Description: "The directory has no user with this ID."})
}

// notPerformedJSON is real mode's answer to an allowed action: the target
// as Graph describes it, and what the action would have done.
type notPerformedJSON struct {
	UserID              string   `json:"userId"`
	DisplayName         string   `json:"displayName"`
	UserPrincipalName   string   `json:"userPrincipalName"`
	AdministrativeUnits []string `json:"administrativeUnits"`
	Performed           bool     `json:"performed"`
	WouldHave           string   `json:"wouldHave"`
}

func notPerformed(u *graphcheck.DirectoryUser, what string) notPerformedJSON {
	units := u.AdministrativeUnits
	if units == nil {
		units = []string{}
	}
	return notPerformedJSON{UserID: u.ID, DisplayName: u.DisplayName, UserPrincipalName: u.UserPrincipalName,
		AdministrativeUnits: units, WouldHave: what}
}

func (a *app) audit(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"entries": a.dir.auditLog()})
}

func rfc3339(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	// An error here means the client went away; there is nobody to tell.
	_ = json.NewEncoder(w).Encode(v)
}
