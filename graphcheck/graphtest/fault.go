package graphtest

import (
	"net/http"
	"strings"
)

// FaultKind selects how a [Fault] misbehaves.
type FaultKind int

const (
	// FaultRespond answers with Fault.Status, Fault.RetryAfter and either
	// Fault.Body verbatim or a Graph error envelope built from Fault.Code and
	// Fault.Message. It is the zero value.
	FaultRespond FaultKind = iota
	// FaultDropConnection hijacks the HTTP connection and closes it without
	// answering. For a $batch sub-request the whole batch connection drops.
	FaultDropConnection
	// FaultHang answers nothing until the client gives up (the request's
	// context is done) or the server closes. It never sleeps. For a $batch
	// sub-request the whole batch hangs.
	FaultHang
	// FaultNextLink serves the request normally but, if the answer is a
	// collection, sets its @odata.nextLink to Fault.NextLink (for example an
	// off-host URL). Other answers are unchanged.
	FaultNextLink
	// FaultNextLinkLoop serves the request normally but, if the answer is a
	// collection, sets its @odata.nextLink to the request's own URL, so a
	// client following links never reaches the end.
	FaultNextLinkLoop
)

// Fault describes a misbehaviour of the Graph emulator for
// [Server.InjectGraphFault]. The zero value answers 500 with a Graph error
// envelope. The constructors ([ThrottledFault], [DeniedFault], ...) fill in
// Microsoft's documented shapes.
type Fault struct {
	Kind FaultKind
	// Status is the HTTP status for FaultRespond. Default: 200 when Body is
	// set, else 500.
	Status int
	// Code and Message fill the Graph error envelope
	// {"error":{"code","message","innerError":{...}}}. Default: a code
	// typical of Status (e.g. Authorization_RequestDenied for 403).
	Code, Message string
	// RetryAfter is the Retry-After header value ("2", "2.128"); empty sends
	// none.
	RetryAfter string
	// Body, when set, is sent verbatim instead of the error envelope, with
	// Content-Type application/json: use it for malformed JSON or JSON of the
	// wrong shape. Inside a $batch a Body that is not valid JSON is embedded
	// as a JSON string.
	Body string
	// NextLink is the @odata.nextLink for FaultNextLink.
	NextLink string
	// Times limits the fault to the next Times matching requests (each $batch
	// sub-request counts as one, and so does a request whose answer a
	// FaultNextLink* fault leaves unchanged); zero means until removed.
	Times int
}

// BatchScope says which requests a [GraphMatch] considers.
type BatchScope int

const (
	// AnyRequest matches requests that arrive on their own (including the
	// POST /$batch itself) and $batch sub-requests.
	AnyRequest BatchScope = iota
	// OutsideBatch matches only requests that arrive on their own, including
	// the POST /$batch itself.
	OutsideBatch
	// InsideBatch matches only $batch sub-requests.
	InsideBatch
)

// GraphMatch selects the Graph requests a fault applies to.
type GraphMatch struct {
	// PathPrefix is compared, case-insensitively, with the path below the
	// version root, e.g. "/roleManagement/", "/users/", "/$batch"; a leading
	// "/v1.0" is ignored. Empty matches every Graph request,
	// including the POST /$batch itself unless Scope is InsideBatch.
	PathPrefix string
	// Path, if set, must equal the path below the version root
	// (case-insensitively, without the query), e.g. "/users/{id}" for that
	// user alone and not its /transitiveMemberOf; a leading "/v1.0" is
	// ignored.
	Path string
	// Method, if set, must equal the request method (e.g. "GET").
	Method string
	// Scope restricts matching to or away from $batch sub-requests.
	Scope BatchScope
}

// MatchPath returns a GraphMatch for requests whose path below the version
// root starts with prefix, inside or outside a batch.
func MatchPath(prefix string) GraphMatch { return GraphMatch{PathPrefix: prefix} }

func (m GraphMatch) matches(r *graphRequest) bool {
	switch m.Scope {
	case OutsideBatch:
		if r.batchID != "" {
			return false
		}
	case InsideBatch:
		if r.batchID == "" {
			return false
		}
	}
	if m.Method != "" && !strings.EqualFold(m.Method, r.method) {
		return false
	}
	if m.Path != "" && !strings.EqualFold(r.path, versionless(m.Path)) {
		return false
	}
	return strings.HasPrefix(strings.ToLower(r.path), strings.ToLower(versionless(m.PathPrefix)))
}

// versionless drops a leading "/v1.0" from a path.
func versionless(p string) string {
	if rest, ok := strings.CutPrefix(p, graphVersion); ok && (rest == "" || rest[0] == '/') {
		return rest
	}
	return p
}

type graphFault struct {
	match GraphMatch
	fault Fault
	left  int // remaining uses when fault.Times > 0
}

// InjectGraphFault makes Graph requests selected by match misbehave as f
// describes, for the next f.Times of them or, if Times is zero, until the
// returned function is called. Faults are checked in the order they were
// injected; the first match wins. A $batch sub-request is matched on its own
// path, after the outer POST /$batch has been matched (and passed).
// [Server.InjectFault] faults are checked before these, on whole HTTP
// requests only.
func (s *Server) InjectGraphFault(match GraphMatch, f Fault) (remove func()) {
	return addFault(s, &s.graphFaults, &graphFault{match: match, fault: f, left: f.Times})
}

// takeGraphFault returns the fault for r, if any, consuming one use.
func (s *Server) takeGraphFault(r *graphRequest) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, gf := range s.graphFaults {
		if !gf.match.matches(r) {
			continue
		}
		f := gf.fault
		if f.Times > 0 {
			gf.left--
			if gf.left <= 0 {
				s.graphFaults = append(s.graphFaults[:i], s.graphFaults[i+1:]...)
			}
		}
		return &f
	}
	return nil
}

// ThrottledFault is Graph's 429 TooManyRequests with the documented body and
// the given Retry-After header: an integer ("10"), a fraction ("2.128", as
// in Microsoft's throttling sample) or "" for none.
func ThrottledFault(retryAfter string) Fault {
	return Fault{Status: http.StatusTooManyRequests, Code: "TooManyRequests", Message: "Please retry again later.", RetryAfter: retryAfter}
}

// DeniedFault is 403 Authorization_RequestDenied, which directory endpoints
// return when the caller lacks a permission.
func DeniedFault() Fault {
	return Fault{Status: http.StatusForbidden, Code: "Authorization_RequestDenied", Message: "Insufficient privileges to complete the operation."}
}

// ScopeNotGrantedFault is the 403 the PIM (roleManagement) endpoints return
// when the token lacks a RoleManagement permission: code "UnknownError" and
// a message that is itself a JSON document with errorCode
// "PermissionScopeNotGranted".
func ScopeNotGrantedFault() Fault {
	return Fault{Status: http.StatusForbidden, Code: "UnknownError",
		Message: `{"errorCode":"PermissionScopeNotGranted","message":"Authorization failed due to missing permission scope RoleManagement.Read.Directory,RoleManagement.Read.All,RoleManagement.ReadWrite.Directory.","instanceAnnotations":[]}`}
}

// LicenseRequiredFault is the 403 AadPremiumLicenseRequired that PIM
// endpoints return in a tenant without Microsoft Entra ID P2.
func LicenseRequiredFault() Fault {
	return Fault{Status: http.StatusForbidden, Code: "AadPremiumLicenseRequired",
		Message: "The tenant needs an AAD Premium 2 license."}
}

// MalformedJSONFault answers 200 with a truncated JSON body.
func MalformedJSONFault() Fault {
	return Fault{Status: http.StatusOK, Body: `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#x","value":[{"id":`}
}

// WrongShapeFault answers 200 with valid JSON of the wrong shape: value is
// an object, not an array, and @odata.nextLink is a number.
func WrongShapeFault() Fault {
	return Fault{Status: http.StatusOK, Body: `{"value":{"id":"not-a-collection"},"@odata.nextLink":42}`}
}

// NextLinkOffHostFault serves collections normally but points their
// @odata.nextLink at another host, which a careful client must not follow
// with its token.
func NextLinkOffHostFault() Fault {
	return Fault{Kind: FaultNextLink, NextLink: "https://graph.microsoft.com.attacker.invalid/v1.0/users?$skiptoken=stolen"}
}
