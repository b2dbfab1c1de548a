package msgraph

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/pimguard/pimguard/graphcheck"
)

// Permissions and licence named by the [graphcheck.PermissionError]s a
// [Source] returns: the least-privileged application permissions for the
// requests it sends.
const (
	// PermissionRoleAssignmentSchedule reads directory-role assignment
	// schedule instances (the principal's own and its groups').
	PermissionRoleAssignmentSchedule = "RoleAssignmentSchedule.Read.Directory"
	// PermissionGroupAssignmentSchedule reads PIM-for-Groups assignment
	// schedule instances.
	PermissionGroupAssignmentSchedule = "PrivilegedAssignmentSchedule.Read.AzureADGroup"
	// PermissionGroupMember reads a user's transitive group memberships with
	// the groups' isAssignableToRole, and lists the role-assignable groups.
	// (User.Read.All is enough to call transitiveMemberOf, but then Graph
	// returns groups with "limited information": isAssignableToRole null,
	// and group-held roles would be missed.)
	PermissionGroupMember = "GroupMember.Read.All"
	// PermissionServicePrincipalMemberOf reads a service principal's
	// transitive group memberships (with PermissionGroupMember for the
	// groups' properties).
	PermissionServicePrincipalMemberOf = "Application.Read.All"
	// PermissionUser reads a user's accountEnabled,
	// signInSessionsValidFromDateTime and lastPasswordChangeDateTime, for
	// the account checks ([graphcheck.NeedAccount]). (User.ReadBasic.All
	// does not cover those properties.) A service principal's
	// accountEnabled needs [PermissionServicePrincipalMemberOf] instead.
	PermissionUser = "User.Read.All"
	// PermissionRiskyUser reads Identity Protection's riskyUsers, for the
	// risk check ([graphcheck.NeedRisk]).
	PermissionRiskyUser = "IdentityRiskyUser.Read.All"
	// PermissionCheckMemberGroups is what POST
	// /users/{id}/checkMemberGroups needs, for live group membership
	// ([graphcheck.Principal.CheckGroups]): both permissions, the least
	// privileged pair Graph documents for application callers (or
	// Directory.Read.All alone). For a service principal it is
	// [PermissionServicePrincipalMemberOf].
	PermissionCheckMemberGroups = PermissionGroupMember + " and " + PermissionUser
	// PermissionAdministrativeUnit reads administrative units and their
	// membership, for [Source.User] (which also reads the user itself,
	// with [PermissionUser]).
	PermissionAdministrativeUnit = "AdministrativeUnit.Read.All"
	// LicencePIM is what a 403 AadPremiumLicenseRequired asks for.
	LicencePIM = "a Microsoft Entra ID P2 or Microsoft Entra ID Governance licence"
	// LicenceRisk is what Identity Protection's riskyUsers need, and what a
	// riskLevel of "hidden" (the user is not covered) asks for.
	LicenceRisk = "a Microsoft Entra ID P2 licence (Identity Protection)"
)

// endpoint describes one kind of Graph request for error classification.
type endpoint struct {
	// method is the request's method; "" means GET.
	method string
	// path is the request's path template below the version (no IDs, no
	// query), used in error texts and [graphcheck.PermissionError.Request].
	path string
	// permission is the application permission it needs.
	permission string
	// principal is true when a 404 Request_ResourceNotFound means the
	// principal itself does not exist.
	principal bool
	// licence is what a 403 AadPremiumLicenseRequired asks for; ""
	// means [LicencePIM].
	licence string
}

var (
	epRoles      = &endpoint{path: "/roleManagement/directory/roleAssignmentScheduleInstances", permission: PermissionRoleAssignmentSchedule}
	epGroupPIM   = &endpoint{path: "/identityGovernance/privilegedAccess/group/assignmentScheduleInstances", permission: PermissionGroupAssignmentSchedule}
	epUserGroups = &endpoint{path: "/users/{id}/transitiveMemberOf/graph.group", permission: PermissionGroupMember, principal: true}
	epSPGroups   = &endpoint{path: "/servicePrincipals/{id}/transitiveMemberOf/graph.group", permission: PermissionServicePrincipalMemberOf, principal: true}
	epGroups     = &endpoint{path: "/groups", permission: PermissionGroupMember}
	epUser       = &endpoint{path: "/users/{id}", permission: PermissionUser, principal: true}
	epSP         = &endpoint{path: "/servicePrincipals/{id}", permission: PermissionServicePrincipalMemberOf, principal: true}
	epRisk       = &endpoint{path: "/identityProtection/riskyUsers/{id}", permission: PermissionRiskyUser, licence: LicenceRisk}

	// checkMemberGroups, for live group membership.
	epUserCheckGroups = &endpoint{method: http.MethodPost, path: "/users/{id}/checkMemberGroups", permission: PermissionCheckMemberGroups, principal: true}
	epSPCheckGroups   = &endpoint{method: http.MethodPost, path: "/servicePrincipals/{id}/checkMemberGroups", permission: PermissionServicePrincipalMemberOf, principal: true}

	// A user's administrative units, for Source.User (with epUser).
	epUserUnits = &endpoint{path: "/users/{id}/memberOf/graph.administrativeUnit", permission: PermissionAdministrativeUnit, principal: true}

	// The $batch itself, when no sub-request is to blame.
	epBatch = &endpoint{path: "/$batch"}

	// Preflight requests, one per feature (see Source.Preflight).
	epUsers      = &endpoint{path: "/users", permission: PermissionUser}
	epRiskyUsers = &endpoint{path: "/identityProtection/riskyUsers", permission: PermissionRiskyUser, licence: LicenceRisk}
	epUnits      = &endpoint{path: "/directory/administrativeUnits", permission: PermissionAdministrativeUnit}
)

// request names the request in error texts, e.g. "GET /groups".
func (ep *endpoint) request() string {
	if ep.path == "/$batch" {
		return "POST /$batch"
	}
	return cmp.Or(ep.method, http.MethodGet) + " " + ep.path
}

// batchEndpoint describes the POST /$batch carrying the given requests: a
// 403 on the batch itself names all their permissions.
func batchEndpoint(cols []*collection) *endpoint {
	var perms []string
	seen := map[string]bool{}
	for _, c := range cols {
		if !seen[c.ep.permission] {
			seen[c.ep.permission] = true
			perms = append(perms, c.ep.permission)
		}
	}
	return &endpoint{path: "/$batch", permission: strings.Join(perms, ", ")}
}

// graphErrorBody is Graph's error envelope, read leniently.
type graphErrorBody struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorCode returns the code and message of a Graph error body; both are
// empty when the body is not an error envelope.
func errorCode(body []byte) (code, message string) {
	var e graphErrorBody
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return "", ""
	}
	return e.Error.Code, e.Error.Message
}

// notFoundCodes are the error codes with which Graph says, in a 404, that
// the object asked for does not exist:
//   - Request_ResourceNotFound, the directory's code for an unknown object
//     ID ("Resource '{id}' does not exist or one of its queried
//     reference-property objects are not present."), which is what a GET
//     of /identityProtection/riskyUsers/{id} answers for a user Identity
//     Protection has no record of, and what graphtest's getRiskyUser sends;
//   - itemNotFound, the code Graph's error reference
//     (learn.microsoft.com/graph/errors, "Code property") documents for
//     "The resource could not be found."
//
// The riskyUser reference documents no error body of its own. A 404 with
// any other code, without Graph's error envelope (a proxy's or a load
// balancer's page) or with HTML is not this answer and is not read as "no
// record".
var notFoundCodes = []string{"Request_ResourceNotFound", "itemNotFound"}

// notFoundError reports whether body is Graph's error envelope with one of
// notFoundCodes (compared case-insensitively, as classifyStatus does).
func notFoundError(body []byte) bool {
	code, _ := errorCode(body)
	for _, c := range notFoundCodes {
		if strings.EqualFold(code, c) {
			return true
		}
	}
	return false
}

// retryable reports whether status is worth retrying after a wait.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// classifyStatus is the one place that turns a failed Graph answer (a whole
// response or a $batch sub-response) into an error wrapping a graphcheck
// sentinel. code and message come from Graph's error envelope and may be
// empty. A 5xx, and a 429 (which reaches a caller only once retries are
// spent or cannot fit before the deadline: see fetch), also wrap
// [graphcheck.ErrOutage]: Graph is down or throttling the tenant, not
// refusing one request. A 3xx, 400, 401, 403 or 404 does not.
func classifyStatus(ep *endpoint, status int, code, message string) error {
	detail := fmt.Sprintf("%s answered %d", ep.request(), status)
	if code != "" {
		detail += " " + code
	}
	if message != "" {
		detail += ": " + clip(message)
	}
	switch {
	case status == http.StatusNotFound && ep.principal && strings.EqualFold(code, "Request_ResourceNotFound"):
		return fmt.Errorf("%w: %s", graphcheck.ErrPrincipalNotFound, detail)
	case status == http.StatusForbidden && strings.EqualFold(code, "AadPremiumLicenseRequired"):
		licence := ep.licence
		if licence == "" {
			licence = LicencePIM
		}
		return &graphcheck.PermissionError{Permission: licence, Request: ep.path, Code: code, Err: graphcheck.ErrLicenseRequired}
	case status == http.StatusForbidden:
		// Authorization_RequestDenied (directory endpoints), UnknownError
		// with a JSON message holding PermissionScopeNotGranted (PIM), or
		// any other refusal: a 403 is a configuration error, not an outage.
		switch {
		case strings.Contains(strings.ToLower(code+" "+message), "permissionscopenotgranted"):
			code = "PermissionScopeNotGranted"
		case code == "":
			code = "403 Forbidden"
		}
		return &graphcheck.PermissionError{Permission: ep.permission, Request: ep.path, Code: code, Err: graphcheck.ErrPermissionDenied}
	case status == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %w: %w: %s", graphcheck.ErrUnavailable, graphcheck.ErrOutage, errThrottled, detail)
	case status >= 500 && status <= 599:
		return outage("%s", detail)
	case status == http.StatusUnauthorized:
		return fmt.Errorf("%w: token refused: %s", graphcheck.ErrUnavailable, detail)
	}
	return fmt.Errorf("%w: %s", graphcheck.ErrUnavailable, detail)
}

// classifyErr turns an error from sending a request (credential, transport,
// context, or an SDK error value) into an error wrapping a graphcheck
// sentinel. It reads SDK error types through their nil-safe getters only:
// ODataError.Error() dereferences the "error" object and panics without it.
// A deadline, a connection refused, reset or dropped, and a network
// timeout also wrap [graphcheck.ErrOutage] (see connectionFailure); the
// caller giving up (context.Canceled), a credential that gets no token and
// anything else do not.
func classifyErr(ep *endpoint, err error) error {
	var (
		odata   *odataerrors.ODataError
		api     *abstractions.ApiError
		authErr *azidentity.AuthenticationFailedError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return outage("%s: Graph did not answer in time: %w", ep.request(), err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %s: %w", graphcheck.ErrUnavailable, ep.request(), err)
	case errors.As(err, &odata):
		code, message := "", ""
		if main := odata.GetErrorEscaped(); main != nil {
			code, message = deref(main.GetCode()), deref(main.GetMessage())
		}
		return classifyStatus(ep, odata.GetStatusCode(), code, message)
	case errors.As(err, &api):
		if api.ResponseStatusCode != 0 {
			return classifyStatus(ep, api.ResponseStatusCode, "", "")
		}
	case connectionFailure(err):
		return outage("%s: %v", ep.request(), clip(err.Error()))
	case errors.As(err, &authErr):
		return fmt.Errorf("%w: the credential could not get a Graph token: %v", graphcheck.ErrUnavailable, clip(err.Error()))
	}
	return fmt.Errorf("%w: %s: %v", graphcheck.ErrUnavailable, ep.request(), clip(err.Error()))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// clip shortens texts from Graph for error messages.
func clip(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// errThrottled is wrapped, after [graphcheck.ErrUnavailable], by the error
// of a 429 answer, for errorClass.
var errThrottled = errors.New("throttled")

// unavailable returns an error wrapping [graphcheck.ErrUnavailable].
func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{graphcheck.ErrUnavailable}, args...)...)
}

// outage returns an error wrapping [graphcheck.ErrUnavailable] and
// [graphcheck.ErrOutage]: Graph is down for everyone, not wrong about one
// request.
func outage(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{graphcheck.ErrUnavailable, graphcheck.ErrOutage}, args...)...)
}

// connectionFailure reports whether err says that Graph could not be
// reached or dropped the connection: a dial, read or write failure
// (*net.OpError: refused, reset, unreachable, DNS), an answer cut short
// (io.EOF, io.ErrUnexpectedEOF), or a network timeout. A TLS certificate
// that does not verify is none of these: it is a configuration (or an
// attack), not an outage.
func connectionFailure(err error) bool {
	var (
		op  *net.OpError
		dns *net.DNSError
		ne  net.Error
	)
	switch {
	case errors.As(err, &op), errors.As(err, &dns):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &ne):
		return ne.Timeout()
	}
	return false
}
