// Package msgraph is the Microsoft Graph-backed [graphcheck.Source]: it asks
// Graph, through github.com/microsoftgraph/msgraph-sdk-go, which directory
// roles and PIM-for-Groups memberships a principal holds right now. It is
// the only pimguard package that imports the Graph SDK, so the domain logic,
// the cache and the middleware build and test without it.
//
// # What a lookup sends
//
// [Source.Lookup] validates the principal's IDs (only GUIDs reach a URL or
// an OData $filter), then sends one JSON $batch (POST {BaseURL}/$batch) of
// three GET sub-requests:
//
//	/roleManagement/directory/roleAssignmentScheduleInstances?$filter=principalId eq '{oid}'&$select=roleDefinitionId,directoryScopeId,appScopeId,assignmentType,memberType,startDateTime,endDateTime
//	/identityGovernance/privilegedAccess/group/assignmentScheduleInstances?$filter=principalId eq '{oid}'&$select=groupId,accessId,assignmentType,startDateTime,endDateTime
//	/users/{oid}/transitiveMemberOf/graph.group?$select=id,isAssignableToRole&$top=999
//
// (/servicePrincipals/{oid}/... for a service principal). Each
// sub-response's status is checked on its own. Further pages
// (@odata.nextLink, only ever on the configured host and API version, at
// most [Config.MaxPages] per collection, loops refused) travel together in
// the next $batch. A principal who belongs to no role-assignable group costs
// exactly one HTTP round trip per page.
//
// A lookup asked for the account ([graphcheck.NeedAccount]) adds a fourth
// sub-request to the same $batch, GET
// /users/{oid}?$select=id,accountEnabled,signInSessionsValidFromDateTime,lastPasswordChangeDateTime
// (/servicePrincipals/{oid}?$select=id,accountEnabled for a service
// principal); its 404 is the principal's deletion. A user record must carry
// both dates, null or not: one missing from the answer makes it unreadable
// ([graphcheck.ErrUnavailable]), and null is the zero time, Graph's "no
// value" (see [graphcheck.Account]). A lookup asked for the
// risk ([graphcheck.NeedRisk], users only) adds GET
// /identityProtection/riskyUsers/{oid}?$select=id,riskLevel,riskState, but
// only when the user's risk is not cached: Identity Protection allows about
// one request per second per tenant for all applications together, so risk
// is kept for [Config.RiskTTL] and its requests pass a per-tenant
// token-bucket limiter ([Config.RiskRequestsPerSecond]), shared by every
// replica when [Config.TenantLimits] is set; a 404 there with
// Graph's not-found error (Request_ResourceNotFound or itemNotFound) means
// the user was never flagged, which is no risk, and any other 404 is an
// unreadable answer. [Source.Purge] and [Source.PurgeAll] drop cached risk;
// a lookup running meanwhile does not store the risk it read before them.
//
// A lookup whose [graphcheck.Principal.CheckGroups] is not empty also asks
// which of those groups the principal is a live, transitive member of,
// PIM-managed or not, in the same $batch:
//
//	POST /users/{oid}/checkMemberGroups   {"groupIds":[up to 20 group IDs]}
//
// (/servicePrincipals/{oid}/checkMemberGroups for a service principal),
// one sub-request per 20 groups (at most [graphcheck.MaxCheckGroups], so
// that everything still fits one $batch). Graph answers the IDs of the
// groups asked that the object belongs to, however many groups it belongs
// to in all; the answer becomes [graphcheck.State.MemberOf]. An ID that was
// not asked about, a further page or anything but an array of strings
// makes the answer unreadable: a lookup never yields a State without the
// membership it was asked for.
//
// [Source.User] describes another user of the directory, e.g. the target
// of a helpdesk operation ([graphcheck.UserDirectory]): one $batch of GET
// /users/{id}?$select=id,displayName,userPrincipalName and GET
// /users/{id}/memberOf/graph.administrativeUnit?$select=id&$top=999
// (paged as above), with a 404 meaning no such user.
//
// [Source.Preflight] sends one cheap request per feature at start, so that
// a missing permission or licence stops a service before it serves.
//
// Roles held through role-assignable groups need a tenant-wide fact: which
// role-assignable groups hold which active role instances. It is read with
// GET /groups?$filter=isAssignableToRole eq true&$select=id&$top=999 and then
// each group's roleAssignmentScheduleInstances, 20 per $batch, at most once
// per [Config.GroupRolesTTL] per tenant, shared by concurrent lookups, and
// only when a principal belongs to such a group. [graphcheck.Combine] then
// joins it with the principal's memberships, capping each group-held role at
// the end of the PIM-for-Groups membership that grants it. The State's
// FetchedAt is when the lookup sent its first request, never later, however
// long retries took. [Source.PurgeAll] drops these maps; a fetch running
// meanwhile answers the lookups waiting for it but is not stored.
//
// Dates are read strictly: a date-time that does not parse, one before
// 1970 (such as 0001-01-01T00:00:00Z, which would read as "permanent" in an
// endDateTime) and an endDateTime before its startDateTime make the answer
// unreadable. Redirects are never followed: the SDK's redirect handler is
// removed and a 3xx answer, to the $batch or inside it, is unreadable.
//
// # Errors, retries, timeouts
//
// Every failure is classified in one place into the graphcheck sentinels: a
// 404 Request_ResourceNotFound for the principal is
// [graphcheck.ErrPrincipalNotFound]; a 403 is a [*graphcheck.PermissionError]
// naming the permission the refused request needs (see
// [PermissionRoleAssignmentSchedule] and the other constants), or the
// licence for AadPremiumLicenseRequired; 429, 5xx, timeouts, connection
// failures, credential failures and malformed or wrongly shaped JSON are
// [graphcheck.ErrUnavailable]. No failure produces a State.
//
// Of those, the failures that say Graph is down for everyone rather than
// that one lookup went wrong also wrap [graphcheck.ErrOutage]: a 5xx, a 429
// that the retries did not get past (or whose Retry-After, or the tenant's
// pause, does not fit before the deadline), a deadline (Config.Timeout or
// the caller's), and a connection refused, reset or dropped (or a DNS
// failure, or a network timeout). A 3xx, 400, 401, 403 or 404, a malformed
// or unexpected answer, a nextLink refused, too many pages, the riskyUsers
// limiter, a credential that gets no token, a TLS certificate that does not
// verify and the caller's cancellation do not: a circuit breaker counting
// ErrOutage opens on the former only.
//
// 429, 503 and 504 answers, of a whole $batch or of single sub-requests
// inside one, are retried up to [Config.MaxRetries] times after the
// Retry-After they ask for (fractional seconds included) or an exponential
// backoff, but only when the wait fits before the deadline: each Lookup is
// bounded by its context and [Config.Timeout].
//
// A 429 with a Retry-After, of a $batch or of a sub-request, also pauses
// the tenant, since Graph throttles the application in the tenant, not one
// request: the Source's other lookups of that tenant, and its group-roles
// fetches, wait for what is left of the pause before each $batch (through
// [Config.Sleep], sending nothing meanwhile), or fail at once with
// [graphcheck.ErrUnavailable] (class throttled) when it does not fit before
// their deadline. The pause lasts the Retry-After, at most [MaxPause], on
// [Config.Now]; a longer one is cut to MaxPause, and a shorter one never
// cuts a longer one short. The lookup that received the 429 waits once,
// for its retry, not again for the pause it set; the batches of its pass
// not yet sent wait with that retry. Lookups of other tenants are not
// held back, and [Source.Preflight], which does not know the tenant,
// neither waits for a pause nor sets one.
//
// # Several replicas
//
// Graph's budgets are per application and tenant, so the replicas of one
// deployment share them: limits kept in each process let N replicas send N
// times what one may. With [Config.TenantLimits] (a [graphcheck.TenantLimits];
// cache/redisstore implements it on Redis) the riskyUsers token bucket is
// the tenant's across every replica that shares it, and a 429's pause holds
// back every replica's lookups of the tenant, not only those of the replica
// that received it. When a call to it fails, the Source uses its own
// limiter and pause for that request, never no limit; without it, each
// process keeps its own. Its state caches (the Guard's, this package's risk
// and group-roles caches) are not shared through it.
//
// # Snapshot mode
//
// A [Source] costs one $batch per principal per cache TTL, so Graph traffic
// grows with the number of callers. [NewSnapshot] wraps a Source in a
// [Snapshot]: every [SnapshotConfig.SweepInterval] it lists the tenant's
// active role assignment instances, the role-assignable groups holding
// them with their members, and the PIM-for-Groups instances of the groups
// a Guard requires ([graphcheck.GroupWatcher]), and answers each
// principal's roles and groups from that snapshot with no Graph request,
// keeping every end time. Account facts and live membership checks still
// go per principal. A failed sweep keeps the previous complete snapshot;
// none, or one older than SweepInterval + MaxStale, fails closed. With
// [SnapshotConfig.Store] (a [graphcheck.SnapshotStore]; redisstore
// implements it) one replica of a fleet sweeps at a time and the others
// read its snapshot, authenticated.
//
// # Metrics and traces
//
// A Source reports through the OpenTelemetry APIs to [Config.MeterProvider]
// and [Config.TracerProvider] (by default the global providers, which
// record nothing until the application installs them):
//
//   - pimguard.graph.request.duration, a histogram in seconds of every HTTP
//     round trip to Graph (each POST /$batch, from lookups, group-role
//     fetches and preflight checks alike), by http.response.status_code (0
//     when no answer was read) and, when the batch as a whole failed,
//     error.type (a class below); sub-requests refused inside an answered
//     batch leave it out;
//   - pimguard.graph.errors, a counter of failed lookups and failed
//     preflight checks (one per failing probe) by class;
//   - pimguard.graph.throttled, a counter of 429 answers, of a whole $batch
//     or of a sub-request inside one, whether or not a retry got past
//     them, by request: "/$batch" or the sub-request's path template such
//     as "/roleManagement/directory/roleAssignmentScheduleInstances". 503
//     and 504 answers, retried the same way, are not counted: they are
//     outages, not throttling;
//   - a span per [Source.Lookup], pimguard.graph.lookup, per
//     [Source.User], pimguard.graph.user, and per
//     [Source.Preflight], pimguard.graph.preflight, with attributes
//     pimguard.tenant_id (lookups, User), pimguard.service_principal
//     (lookups), pimguard.check_groups (how many groups a lookup checks,
//     when any), pimguard.need (e.g. ["account","risk"]), pimguard.graph.round_trips
//     and pimguard.outcome ("ok" or the class), and on failure error.type
//     and status Error with the class (classes, comma-separated, for a
//     preflight). Spans carry no object ID, no token and no error text.
//
// The classes come from the classification above: not_found
// ([graphcheck.ErrPrincipalNotFound]), licence
// ([graphcheck.ErrLicenseRequired]), permission
// ([graphcheck.ErrPermissionDenied]), invalid_principal
// ([graphcheck.ErrInvalidPrincipal], nothing sent), throttled (a 429 that
// retries did not get past, or a tenant's pause that does not fit before
// the deadline), timeout (Config.Timeout or the caller's
// deadline), canceled (the caller's context) and unavailable (every other
// [graphcheck.ErrUnavailable], such as a 5xx, a malformed answer or the
// riskyUsers limiter). The SDK's HTTP middleware makes spans of its own
// for each request with the global tracer provider.
//
// # Permissions
//
// Least-privileged application permissions, named by the
// [*graphcheck.PermissionError] of a refused request:
//
//	RoleAssignmentSchedule.Read.Directory            [PermissionRoleAssignmentSchedule]
//	PrivilegedAssignmentSchedule.Read.AzureADGroup   [PermissionGroupAssignmentSchedule]
//	GroupMember.Read.All                             [PermissionGroupMember]
//	Application.Read.All (service principals only)   [PermissionServicePrincipalMemberOf]
//	User.Read.All (account checks)                   [PermissionUser]
//	IdentityRiskyUser.Read.All (risk check)          [PermissionRiskyUser]
//	GroupMember.Read.All and User.Read.All           [PermissionCheckMemberGroups] (live group membership; users)
//	AdministrativeUnit.Read.All                      [PermissionAdministrativeUnit] (Source.User, with User.Read.All)
//
// GroupMember.Read.All is needed even though User.Read.All suffices to call
// transitiveMemberOf: without a group permission Graph returns the groups
// with "limited information" (isAssignableToRole null), and roles held
// through groups would be missed. PIM requires Microsoft Entra ID P2 or
// Governance ([LicencePIM]); Identity Protection requires P2 ([LicenceRisk]).
//
// # Credentials and hosts
//
// Tokens come from an azidentity credential ([Config.Credential], by
// default DefaultAzureCredential) for the scope of the configured national
// cloud, and are attached only to requests to [Config.BaseURL]'s host.
// [Config.InsecureNoCredential] sends no token and is refused unless the
// base URL is on loopback, such as a graphtest fake tenant.
//
// Answers are decoded with encoding/json, comparing Graph's enum strings
// case-insensitively; the SDK builds and sends the requests (request
// builders, $batch items, request adapter, authentication provider and
// middleware).
package msgraph
