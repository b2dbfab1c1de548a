package msgraph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// Graph's answers are decoded with encoding/json into the small structs
// below rather than through the SDK's models: $batch sub-responses arrive as
// raw JSON anyway, and the SDK's enum parsers are case-sensitive (the
// documented PIM-for-Groups payload's "Assigned" and "Direct" parse to nil),
// whereas Graph's documentation shows both "Assigned" and "assigned". Every
// enum is compared case-insensitively here, and a field that cannot be read
// fails the lookup instead of being guessed.

// errShape marks JSON that is valid but not what the endpoint documents.
var errShape = errors.New("unexpected JSON shape")

// page is one page of a Graph collection.
type page struct {
	Value    json.RawMessage `json:"value"`
	NextLink *string         `json:"@odata.nextLink"`
}

// decodePage reads a collection page: an object whose "value" is an array
// and whose optional "@odata.nextLink" is a string.
func decodePage(body []byte) (value json.RawMessage, next string, err error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, "", fmt.Errorf("%w: a collection page is not a JSON object", errShape)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", err
	}
	v := bytes.TrimSpace(p.Value)
	if len(v) == 0 || v[0] != '[' {
		return nil, "", fmt.Errorf("%w: a collection page has no \"value\" array", errShape)
	}
	if p.NextLink != nil {
		next = *p.NextLink
	}
	return v, next, nil
}

// roleInstance is a unifiedRoleAssignmentScheduleInstance, as selected by
// roleSelect.
type roleInstance struct {
	RoleDefinitionID *string `json:"roleDefinitionId"`
	DirectoryScopeID *string `json:"directoryScopeId"`
	AppScopeID       *string `json:"appScopeId"`
	AssignmentType   *string `json:"assignmentType"`
	MemberType       *string `json:"memberType"`
	StartDateTime    *string `json:"startDateTime"`
	EndDateTime      *string `json:"endDateTime"`
}

// roleSelect are the properties of roleInstance.
var roleSelect = []string{"roleDefinitionId", "directoryScopeId", "appScopeId", "assignmentType", "memberType", "startDateTime", "endDateTime"}

// inherited reports whether the instance is one Graph derived from a group
// membership (memberType "Group"). pimguard derives those itself from the
// group's own instances, capped by the membership, and marks them with
// ViaGroupID.
func (r *roleInstance) inherited() bool {
	return r.MemberType != nil && strings.EqualFold(*r.MemberType, "Group")
}

func (r *roleInstance) assignment() (graphcheck.RoleAssignment, error) {
	var a graphcheck.RoleAssignment
	if r.RoleDefinitionID == nil || *r.RoleDefinitionID == "" {
		return a, fmt.Errorf("%w: a role assignment instance has no roleDefinitionId", errShape)
	}
	a.RoleDefinitionID = strings.ToLower(*r.RoleDefinitionID)
	a.DirectoryScopeID = deref(r.DirectoryScopeID)
	a.AppScopeID = deref(r.AppScopeID)
	a.AssignmentType = assignmentType(deref(r.AssignmentType))
	var err error
	if a.Window, err = window(r.StartDateTime, r.EndDateTime); err != nil {
		return a, err
	}
	return a, nil
}

// decodeRoles decodes a page of role assignment schedule instances.
// skipInherited drops memberType "Group" instances (see inherited).
func decodeRoles(value json.RawMessage, skipInherited bool) ([]graphcheck.RoleAssignment, error) {
	var items []roleInstance
	if err := json.Unmarshal(value, &items); err != nil {
		return nil, err
	}
	out := make([]graphcheck.RoleAssignment, 0, len(items))
	for i := range items {
		if skipInherited && items[i].inherited() {
			continue
		}
		a, err := items[i].assignment()
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// groupInstance is a privilegedAccessGroupAssignmentScheduleInstance, as
// selected by groupSelect.
type groupInstance struct {
	GroupID        *string `json:"groupId"`
	AccessID       *string `json:"accessId"`
	AssignmentType *string `json:"assignmentType"`
	StartDateTime  *string `json:"startDateTime"`
	EndDateTime    *string `json:"endDateTime"`
}

var groupSelect = []string{"groupId", "accessId", "assignmentType", "startDateTime", "endDateTime"}

// decodeMemberships decodes a page of PIM-for-Groups assignment schedule
// instances.
func decodeMemberships(value json.RawMessage) ([]graphcheck.GroupMembership, error) {
	var items []groupInstance
	if err := json.Unmarshal(value, &items); err != nil {
		return nil, err
	}
	out := make([]graphcheck.GroupMembership, 0, len(items))
	for i := range items {
		m, err := items[i].membership()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (it *groupInstance) membership() (graphcheck.GroupMembership, error) {
	if it.GroupID == nil || *it.GroupID == "" || it.AccessID == nil || *it.AccessID == "" {
		return graphcheck.GroupMembership{}, fmt.Errorf("%w: a PIM for Groups instance has no groupId or accessId", errShape)
	}
	m := graphcheck.GroupMembership{
		GroupID:        strings.ToLower(*it.GroupID),
		AccessID:       strings.ToLower(*it.AccessID),
		AssignmentType: assignmentType(deref(it.AssignmentType)),
	}
	var err error
	m.Window, err = window(it.StartDateTime, it.EndDateTime)
	return m, err
}

// group is a group of transitiveMemberOf/graph.group or of /groups.
type group struct {
	ODataType          *string `json:"@odata.type"`
	ID                 *string `json:"id"`
	IsAssignableToRole *bool   `json:"isAssignableToRole"`
}

var memberOfSelect = []string{"id", "isAssignableToRole"}

// decodeGroups decodes a page of groups. Objects typed as something other
// than a group are skipped; isAssignableToRole counts only when true.
func decodeGroups(value json.RawMessage) ([]graphcheck.GroupRef, error) {
	var items []group
	if err := json.Unmarshal(value, &items); err != nil {
		return nil, err
	}
	out := make([]graphcheck.GroupRef, 0, len(items))
	for _, it := range items {
		if it.ODataType != nil && !strings.EqualFold(strings.TrimPrefix(*it.ODataType, "#"), "microsoft.graph.group") {
			continue
		}
		if it.ID == nil || *it.ID == "" {
			return nil, fmt.Errorf("%w: a group has no id", errShape)
		}
		out = append(out, graphcheck.GroupRef{
			ID:                 strings.ToLower(*it.ID),
			IsAssignableToRole: it.IsAssignableToRole != nil && *it.IsAssignableToRole,
		})
	}
	return out, nil
}

// assignmentType normalises Graph's assignmentType ("Assigned", "assigned",
// "Activated", ...) to the graphcheck constants; other values are kept.
func assignmentType(s string) string {
	switch {
	case strings.EqualFold(s, graphcheck.AssignmentAssigned):
		return graphcheck.AssignmentAssigned
	case strings.EqualFold(s, graphcheck.AssignmentActivated):
		return graphcheck.AssignmentActivated
	}
	return s
}

// window reads startDateTime and endDateTime; null means "since before"
// and "permanent". A value that does not parse, or that parseTime refuses,
// is an error, never a permanent assignment; so is an end before the
// start.
func window(start, end *string) (graphcheck.Window, error) {
	var w graphcheck.Window
	var err error
	if w.Start, err = parseTime(start); err != nil {
		return w, err
	}
	if w.End, err = parseTime(end); err != nil {
		return w, err
	}
	if !w.Start.IsZero() && !w.End.IsZero() && w.End.Before(w.Start) {
		return w, fmt.Errorf("%w: endDateTime %s is before startDateTime %s", errShape, w.End.Format(time.RFC3339), w.Start.Format(time.RFC3339))
	}
	return w, nil
}

// minDateTime is the earliest date-time Graph is believed to send in the
// fields read here: none of them can predate Microsoft Entra ID, let alone
// the Unix epoch. "0001-01-01T00:00:00Z" (.NET's DateTime.MinValue, what a
// serializer writes for an unset value) parses to Go's zero time, which
// reads as "permanent" for an endDateTime and as "no value" elsewhere; such
// a value is refused instead.
var minDateTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// parseTime reads an RFC 3339 date-time; nil (JSON null or absent) is the
// zero time. A value that does not parse, or that is earlier than
// minDateTime, is an error: a date Graph would never send must not decide
// anything.
func parseTime(s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: date-time %.40q does not parse", errShape, *s)
	}
	if t.Before(minDateTime) {
		return time.Time{}, fmt.Errorf("%w: date-time %.40q is before 1970", errShape, *s)
	}
	return t.UTC(), nil
}

// jsonMember is an object member whose absence matters: Present tells an
// absent member from one that is null (Value nil).
type jsonMember[T any] struct {
	Present bool
	Value   *T
}

// UnmarshalJSON is called for every member that is in the object, null
// included (encoding/json calls it with "null").
func (m *jsonMember[T]) UnmarshalJSON(b []byte) error {
	m.Present = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		m.Value = nil
		return nil
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	m.Value = &v
	return nil
}

// accountObject is a user or service principal as selected by userSelect or
// spSelect.
type accountObject struct {
	ID                              *string            `json:"id"`
	AccountEnabled                  *bool              `json:"accountEnabled"`
	SignInSessionsValidFromDateTime jsonMember[string] `json:"signInSessionsValidFromDateTime"`
	LastPasswordChangeDateTime      jsonMember[string] `json:"lastPasswordChangeDateTime"`
}

var (
	userSelect = []string{"id", "accountEnabled", "signInSessionsValidFromDateTime", "lastPasswordChangeDateTime"}
	spSelect   = []string{"id", "accountEnabled"}
)

// decodeAccount reads GET /users/{id} (user true) or
// /servicePrincipals/{id}. The object must be the principal asked for and
// must say whether it is enabled: Graph leaves accountEnabled out when the
// application may not read it, and a missing value is never taken for
// "enabled".
//
// A user must also carry signInSessionsValidFromDateTime and
// lastPasswordChangeDateTime, which userSelect asks for: a $select-ed
// property that is absent from the answer is an answer that cannot be read
// (a proxy, a partial answer, a permission that hides it), never "no
// revocation". An explicit null is Graph's documented "no value" — both are
// nullable DateTimeOffsets of the user resource type, and neither is
// documented as always set: no sign-in sessions were revoked by a
// timestamp, no password change was recorded (a user without a password in
// this tenant, such as a B2B guest) — and becomes the zero time, against
// which the checks have nothing to compare.
func decodeAccount(body []byte, oid string, user bool) (*graphcheck.Account, error) {
	var o accountObject
	if err := decodeObject(body, "the account", &o); err != nil {
		return nil, err
	}
	switch {
	case o.ID != nil && !strings.EqualFold(*o.ID, oid):
		return nil, fmt.Errorf("%w: asked for %s, got the object %.40q", errShape, oid, *o.ID)
	case o.AccountEnabled == nil:
		return nil, fmt.Errorf("%w: accountEnabled is missing (does the application have %s?)", errShape, PermissionUser)
	case !user:
		return &graphcheck.Account{Enabled: *o.AccountEnabled}, nil
	case !o.SignInSessionsValidFromDateTime.Present || !o.LastPasswordChangeDateTime.Present:
		return nil, fmt.Errorf("%w: the user lacks signInSessionsValidFromDateTime or lastPasswordChangeDateTime, which were selected", errShape)
	}
	a := &graphcheck.Account{Enabled: *o.AccountEnabled}
	var err error
	if a.SessionsValidFrom, err = parseTime(o.SignInSessionsValidFromDateTime.Value); err != nil {
		return nil, err
	}
	if a.PasswordChanged, err = parseTime(o.LastPasswordChangeDateTime.Value); err != nil {
		return nil, err
	}
	return a, nil
}

// riskyUser is Identity Protection's riskyUser, as selected by riskSelect.
type riskyUser struct {
	ID        *string `json:"id"`
	RiskLevel *string `json:"riskLevel"`
	RiskState *string `json:"riskState"`
}

var riskSelect = []string{"id", "riskLevel", "riskState"}

// decodeRisk reads GET /identityProtection/riskyUsers/{id}. A riskLevel of
// "hidden" means Identity Protection does not cover the user (licence): the
// risk is unknown, which fails the lookup rather than pass for "no risk".
func decodeRisk(body []byte, oid string) (graphcheck.Risk, error) {
	var r graphcheck.Risk
	var u riskyUser
	if err := decodeObject(body, "the riskyUser", &u); err != nil {
		return r, err
	}
	switch {
	case u.ID != nil && !strings.EqualFold(*u.ID, oid):
		return r, fmt.Errorf("%w: asked for the risk of %s, got %.40q", errShape, oid, *u.ID)
	case u.RiskLevel == nil || *u.RiskLevel == "" || u.RiskState == nil || *u.RiskState == "":
		return r, fmt.Errorf("%w: a riskyUser has no riskLevel or riskState", errShape)
	case strings.EqualFold(*u.RiskLevel, graphcheck.RiskLevelHidden):
		return r, &graphcheck.PermissionError{Permission: LicenceRisk, Request: epRisk.path, Code: "riskLevel hidden", Err: graphcheck.ErrLicenseRequired}
	}
	return graphcheck.Risk{Level: *u.RiskLevel, State: *u.RiskState, Recorded: true}, nil
}

// decodeObject reads the body of a GET of one object (what names it in
// errors) into v: a JSON object, not an array, a string or a collection
// page.
func decodeObject(body []byte, what string, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return fmt.Errorf("%w: %s is not a JSON object", errShape, what)
	}
	return json.Unmarshal(body, v)
}
