// Package graphtest is a fake Microsoft Entra tenant on loopback, for tests
// and demos: a token half that stands in for login.microsoftonline.com and a
// Graph half that stands in for the Microsoft Graph endpoints a PIM-aware
// client reads. It uses only the standard library and go-jose; it does not
// depend on the Graph SDK, so it stays cheap to compile.
//
// # Starting a tenant
//
// [NewServer] starts a [Server] configured by [Options]. Every clock-driven
// behaviour (token lifetimes, PIM schedules, error timestamps) reads one
// shared [Clock]; nothing in the package sleeps, so time passes only when a
// test calls [Clock.Advance] or [Clock.Set]. The server records every
// request ([Server.Requests], [Server.CountRequests], [Server.ResetRequests]),
// including each $batch sub-request ([Request.BatchID]) and whether it
// carried a bearer token ([Request.BearerToken]).
//
// # The token half
//
// The server serves OpenID Connect discovery for the v1 and v2 endpoints of
// each tenant in [Options.Tenants] and a JWKS with rollover
// ([Server.RotateSigningKey], [Server.RetireKey]). [Server.Mint] signs
// Entra-shaped access tokens described by a [Token]; [Server.Claims] shows
// the claims it would sign and [Server.Sign] signs anything, for tokens Mint
// would never produce. [Server.InjectFault] and [PathPrefix] make the login
// endpoints fail.
//
// # The Graph half
//
// [Server.GraphURL] ({URL}/v1.0; beta is not emulated) serves what
// graphcheck/msgraph's Source and its Preflight read, with GET:
//
//   - /roleManagement/directory/roleAssignmentScheduleInstances, filterable
//     on principalId and roleDefinitionId, or unfiltered: every instance
//     in force;
//   - /identityGovernance/privilegedAccess/group/assignmentScheduleInstances,
//     which, as in Graph, requires a $filter on groupId or principalId;
//   - /users/{id} and /servicePrincipals/{id}, and their
//     /transitiveMemberOf/microsoft.graph.group (or /graph.group, as the Go
//     SDK sends it);
//   - /users (filterable on id and accountEnabled; Graph's default
//     properties unless $select asks for others) and /groups (e.g.
//     $filter=isAssignableToRole eq true), each item rendered as the
//     single-object GET renders it;
//   - /identityProtection/riskyUsers and /identityProtection/riskyUsers/{id},
//     the Identity Protection riskyUser records, filterable on id;
//   - /users/{id}/memberOf/microsoft.graph.administrativeUnit (or
//     /graph.administrativeUnit) and /memberOf/microsoft.graph.group, the
//     administrative units and groups a user (or service principal) is a
//     direct member of, and /directory/administrativeUnits;
//   - /groups/{id}/members, a group's direct members at now (permanent, or
//     through an active PIM for Groups member instance), each with its
//     @odata.type: what a tenant-wide snapshot reads for role-assignable
//     groups;
//
// POST /users/{id}/checkMemberGroups and
// /servicePrincipals/{id}/checkMemberGroups, whose body
// {"groupIds":[...]} names up to [MaxCheckMemberGroups] groups and whose
// answer {"value":[...]} lists those the object is a transitive member of
// at the clock's now: directly, through nested groups, or through an active
// PIM for Groups member assignment (unknown group IDs are not memberships;
// an ID that is not a GUID, or more than 20, is a 400);
//
// and POST /$batch with up to [MaxBatchRequests] sub-requests, executed in
// order (dependsOn is honoured with 424 Failed Dependency). A sub-request
// with a body must name its Content-Type in its own headers object, as
// Graph's JSON batching requires; the batch is a 400 otherwise. Request
// bodies may be gzip-compressed (Content-Encoding: gzip), as Kiota's
// compression handler sends them. Any other path answers 400 BadRequest
// naming the first segment it does not know, any other method 405.
//
// Collections honour $select, $filter (clauses "prop eq 'guid'",
// "prop in ('guid',...)", "prop eq true" joined by "and"; anything else,
// including a value that is not a quoted GUID, is a 400), $top, $count and
// paging through @odata.nextLink and $skiptoken when [Options.GraphPageSize]
// or [Server.SetGraphPageSize] sets a page size. Errors use Graph's envelope
// {"error":{"code","message","innerError":{...}}}; unknown objects are 404
// Request_ResourceNotFound. [Options.RequireGraphAuth] refuses requests
// without a bearer token; the token itself is not verified.
//
// # Seeding the directory and driving PIM
//
// [Server.AddUser], [Server.AddServicePrincipal], [Server.AddGroup] and
// [Server.AddGroupMember] (groups nest) build a small directory;
// [Server.AddAdministrativeUnit] and [Server.AddAdministrativeUnitMember]
// put users and groups into administrative units. [Server.AssignRole] and
// [Server.MakeEligible] give directory roles (to users, service principals
// or role-assignable groups); [Server.ActivateRole] and
// [Server.DeactivateRole] drive PIM activation. [Server.AssignGroup],
// [Server.MakeGroupEligible], [Server.ActivateGroup] and
// [Server.DeactivateGroup] do the same for PIM for Groups, with the same
// rules; an active member instance makes the principal a (transitive)
// member of the group while it lasts. Eligibilities are kept, not served:
// they show only in what activation allows. An instance whose endDateTime
// is not after the clock's now, or whose startDateTime is after it, is not
// returned. The seeding methods return errors wrapping [ErrInvalid],
// [ErrNotFound], [ErrConflict], [ErrNotEligible] or [ErrNotActive].
//
// [Server.Generate] seeds a whole tenant in one pass, described by a
// [TenantSpec] (by default 10 000 users, 2 000 active role assignment
// instances across tenant-wide roles, administrative units and
// role-assignable groups, 50 PIM-managed groups, and eligibilities to
// activate), fast enough for a benchmark, and lists what it created in a
// [GeneratedTenant].
//
// [Server.SetAccountEnabled], [Server.SetServicePrincipalEnabled],
// [Server.RevokeSignInSessions] and [Server.ChangePassword] change what an
// account check (as continuous access evaluation does) reads.
// [Server.DeleteUser] and [Server.DeleteServicePrincipal] remove an object:
// it answers 404 Request_ResourceNotFound everywhere, and its group
// memberships and PIM instances, eligibilities included, are removed with
// it.
//
// # Identity Protection
//
// [Server.SetUserRisk] gives a user a riskyUser record (riskLevel,
// riskState, a matching riskDetail, riskLastUpdatedDateTime from the clock)
// and [Server.ClearUserRisk] removes it; a user without one answers 404
// Request_ResourceNotFound, and a deleted user's record stays with isDeleted
// true. Real Graph serves riskyUsers only to tenants with Microsoft Entra ID
// P2 and callers holding IdentityRiskyUser.Read.All; the emulator checks
// neither, so inject [LicenseRequiredFault] or [DeniedFault] with
// [Server.InjectGraphFault] and a path prefix such as "/identityProtection/"
// to test those refusals.
// Identity Protection also allows only about one request per second per
// tenant, for all apps together, and may throttle without a Retry-After
// header: [Options.RiskyUsersPerSecond] and [Server.SetRiskyUsersPerSecond]
// model that on the fake clock's seconds, counting each $batch sub-request.
//
// # Faults on demand
//
// [Server.InjectGraphFault] makes Graph requests selected by a [GraphMatch]
// (path prefix, method, inside or outside a $batch) misbehave as a [Fault]
// describes: any status with a Graph error code (see [DeniedFault],
// [ScopeNotGrantedFault], [LicenseRequiredFault], [ThrottledFault] with an
// integer, fractional or absent Retry-After), a malformed or wrongly shaped
// body ([MalformedJSONFault], [WrongShapeFault]), an @odata.nextLink that
// leaves the host or loops ([FaultNextLink], [FaultNextLinkLoop]), a dropped
// connection ([FaultDropConnection]) or a hang until the client gives up
// ([FaultHang]); [Fault.Times] limits it to the next N matching requests.
//
// # What is not modelled
//
// Token verification by Graph, permissions, consent and licences, the beta
// API, activation policies (maximum duration, MFA, approval,
// justification), schedule requests and schedules (only assignment
// instances), eligibility instances, the filterByCurrentUser functions and
// /me, roleAssignments and transitiveRoleAssignments, directory roles as
// objects, a check that a scope's administrative unit exists, app
// scopes, lookups by userPrincipalName, /directoryObjects, /groups/{id},
// memberOf without a cast, checkMemberObjects and getMemberGroups, dynamic
// groups and administrative units, hidden membership, the recycle bin
// (directory/deletedItems, restore), writes (the seeding methods stand in
// for them), Identity Protection beyond riskyUser records (risk
// detections, risky service principals, a record's history, the dismiss
// and confirmCompromised actions, risk-based policies) and throttling of
// anything but riskyUsers (inject [ThrottledFault]), and Graph's $expand,
// $orderby and $search (answered with 400): the Graph half serves what the
// repository's Graph client reads, and no more.
package graphtest
