package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/graphcheck/msgraph"
	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

// appConfig is everything newApp needs, whichever mode produced it.
type appConfig struct {
	auth          middleware.AuthenticatorConfig
	graph         msgraph.Config
	guard         middleware.GuardConfig // Source is set by newApp
	auditorsGroup string
	preflight     bool              // Guard.Preflight before serving
	users         map[string]string // the in-memory directory's users: id → name
	now           func() time.Time
	extraRoutes   func(chi.Router) // demo controls

	// fleet is the Redis store of fleet mode, made by newApp (which sets
	// its Logger, MeterProvider and Now) and used as guard.Shared and
	// graph.TenantLimits. An empty URL means no fleet mode.
	fleet redisstore.Config
}

// directoryUsers seeds the in-memory directory the helpdesk actions act on.
var directoryUsers = map[string]string{"alex": "Alex Wilber", "sam": "Sam Taylor", "kim": "Kim Akers"}

// realAppConfig maps the validated environment onto the library's configs.
func realAppConfig(cfg config) appConfig {
	ac := appConfig{
		auth: middleware.AuthenticatorConfig{
			Tenants:   []string{cfg.TenantID},
			Audiences: cfg.Audiences,
			Authority: cfg.Authority,
		},
		graph: msgraph.Config{
			BaseURL:              cfg.GraphURL,
			InsecureNoCredential: cfg.GraphAuth == "none",
		},
		fleet:         fleetConfig(cfg),
		auditorsGroup: cfg.AuditorsGroup,
		preflight:     cfg.Preflight,
		users:         directoryUsers,
		now:           time.Now,
	}
	ac.guard = guardConfig(cfg)
	return ac
}

func guardConfig(cfg config) middleware.GuardConfig {
	g := middleware.GuardConfig{CacheTTL: cfg.CacheTTL, NegativeTTL: cfg.NegativeTTL, MaxStale: cfg.MaxStale,
		AccountChecks: cfg.AccountChecks, ClaimsPolicy: cfg.ClaimsPolicy}
	return g
}

// fleetConfig is cfg's fleet-mode store configuration; its URL is empty
// without PIMGUARD_REDIS_URL.
func fleetConfig(cfg config) redisstore.Config {
	return redisstore.Config{URL: cfg.RedisURL, Key: cfg.SharedKey}
}

// app is the helpdesk API: pimguard in front of an in-memory directory.
type app struct {
	auth          *middleware.Authenticator
	guard         *middleware.Guard
	dir           *directory
	auditorsGroup string
	now           func() time.Time
	logger        *slog.Logger
	extraRoutes   func(chi.Router)
	metrics       http.Handler      // GET /metrics, Prometheus text format
	fleet         *redisstore.Store // nil without fleet mode
}

// newApp builds the app. In fleet mode it connects to Redis (not an error
// when Redis is unreachable: the app then works alone until it is back);
// [app.Close] disconnects.
func newApp(ctx context.Context, ac appConfig, logger *slog.Logger) (_ *app, err error) {
	if ac.now == nil {
		ac.now = time.Now
	}
	ac.auth.Logger, ac.auth.Now = logger, ac.now
	auth, err := middleware.NewAuthenticator(ctx, ac.auth)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics()
	if err != nil {
		return nil, err
	}
	var fleet *redisstore.Store
	if ac.fleet.URL != "" {
		ac.fleet.Logger, ac.fleet.MeterProvider, ac.fleet.Now = logger, m.provider, ac.now
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
	ac.graph.Logger, ac.graph.Now, ac.graph.MeterProvider = logger, ac.now, m.provider
	src, err := msgraph.New(ac.graph)
	if err != nil {
		return nil, err
	}
	ac.guard.Source, ac.guard.Logger, ac.guard.Now, ac.guard.MeterProvider = src, logger, ac.now, m.provider
	guard, err := middleware.NewGuard(ac.guard)
	if err != nil {
		return nil, err
	}
	if ac.preflight {
		// A missing Graph permission or licence stops the service here,
		// naming what to grant, instead of answering 503 to every request.
		if err := guard.Preflight(ctx); err != nil {
			return nil, err
		}
		logger.Info("example: preflight passed", "account_checks", ac.guard.AccountChecks.String())
	}
	return &app{
		auth: auth, guard: guard, dir: newDirectory(ac.now, ac.users), auditorsGroup: ac.auditorsGroup,
		now: ac.now, logger: logger, extraRoutes: ac.extraRoutes, metrics: m.handler, fleet: fleet,
	}, nil
}

// Close releases what the app holds besides its handlers: in fleet mode,
// the Redis store's connections and goroutines. Call it once the server
// has stopped serving.
func (a *app) Close() error {
	if a.fleet == nil {
		return nil
	}
	return a.fleet.Close()
}

// Requirements of the protected routes.
var (
	canResetPasswords = middleware.AnyOf(
		middleware.Role(middleware.RoleHelpdeskAdministrator),
		middleware.Role(middleware.RoleUserAdministrator),
	)
	canDeleteUsers = middleware.Role(middleware.RoleUserAdministrator)
	canPurge       = middleware.Role(middleware.RolePrivilegedRoleAdministrator)
)

func (a *app) routes() http.Handler {
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// Unauthenticated, like most Prometheus endpoints: it carries counts,
	// no identities. Bind the service to an internal address, or put the
	// route behind your own network policy, if that matters.
	r.Method(http.MethodGet, "/metrics", a.metrics)
	r.Route("/api", func(r chi.Router) {
		r.Use(a.auth.Handler)
		r.With(a.guard.Load).Get("/me", a.me)
		r.With(a.guard.Require(canResetPasswords)).Post("/users/{id}/reset-password", a.resetPassword)
		r.With(a.guard.Require(canDeleteUsers)).Delete("/users/{id}", a.deleteUser)
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

func (a *app) resetPassword(w http.ResponseWriter, r *http.Request) {
	p, _ := middleware.PrincipalFromContext(r.Context())
	id := chi.URLParam(r, "id")
	temp, ok := a.dir.resetPassword(p.ObjectID, id)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "user_not_found", "userId": id})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"userId": id, "temporaryPassword": temp, "forceChangeAtNextSignIn": true})
}

func (a *app) deleteUser(w http.ResponseWriter, r *http.Request) {
	p, _ := middleware.PrincipalFromContext(r.Context())
	id := chi.URLParam(r, "id")
	if !a.dir.deleteUser(p.ObjectID, id) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "user_not_found", "userId": id})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"userId": id, "deleted": true})
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
