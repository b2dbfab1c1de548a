// Package graphcheck is pimguard's model of live Privileged Identity
// Management state and the contract of the sources that fetch it.
//
// A [State] is what Microsoft Graph says about one principal right now: its
// active directory-role assignments ([RoleAssignment], including roles held
// through role-assignable groups) and its active PIM-for-Groups memberships
// ([GroupMembership]), each with the end of its time window. Decisions are
// made against a State at a given instant ([State.RoleActive],
// [State.GroupActive]), so a cached State never grants an assignment past
// its end. [State.NotAfter] tells a cache when the State stops being
// accurate by itself.
//
// A [Source] produces States. The Graph-backed Source lives in the
// graphcheck/msgraph subpackage, the only package that imports the Microsoft
// Graph SDK; [Combine] holds the domain rule that joins a principal's own
// assignments with the roles of its role-assignable groups, so that rule is
// tested without the SDK. The graphtest subpackage is a fake tenant (OIDC
// issuer and Graph PIM emulator) for tests.
//
// Errors are classified ([ErrPrincipalNotFound], [ErrPermissionDenied],
// [ErrLicenseRequired], [ErrUnavailable]) so that no failure can be mistaken
// for "no roles"; [ErrOutage] further marks the failures that mean Graph is
// down for everyone, which circuit breakers (graphcheck/breaker) count.
//
// Besides PIM state, a lookup can check live membership of a fixed set of
// groups ([Principal.CheckGroups], a [GroupSet]; answered in
// [State.MemberOf]), and account facts and risk ([Need]).
//
// The optional capabilities of Sources and of what stands in front of them
// are declared here, once: [Preflighter], [Purger], [UserDirectory] (a
// target user and its administrative units, for rules decided in
// handlers), [HealthReporter] (readiness), and [TenantLimits] (Graph limits
// shared by the replicas of a fleet).
package graphcheck
