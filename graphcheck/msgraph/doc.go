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
// principal); its 404 is the principal's deletion. A lookup asked for the
// risk ([graphcheck.NeedRisk], users only) adds GET
// /identityProtection/riskyUsers/{oid}?$select=id,riskLevel,riskState, but
// only when the user's risk is not cached: Identity Protection allows about
// one request per second per tenant for all applications together, so risk
// is kept for [Config.RiskTTL] and its requests pass a per-tenant
// token-bucket limiter ([Config.RiskRequestsPerSecond]); a 404 there means
// the user was never flagged, which is no risk.
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
// the end of the PIM-for-Groups membership that grants it.
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
// 429, 503 and 504 answers, of a whole $batch or of single sub-requests
// inside one, are retried up to [Config.MaxRetries] times after the
// Retry-After they ask for (fractional seconds included) or an exponential
// backoff, but only when the wait fits before the deadline: each Lookup is
// bounded by its context and [Config.Timeout].
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
