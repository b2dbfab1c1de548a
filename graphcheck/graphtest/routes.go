package graphtest

import (
	"fmt"
	"net/http"
	"strings"
)

// route is one Graph resource the emulator serves with one method: a path
// below the version root, compared case-insensitively, whose "{}" segments
// match any value and are handed to serve in order. The path may start
// with the method and a space ("POST users/{}/checkMemberGroups"); without
// one, the method is GET.
type route struct {
	path  string
	serve func(s *Server, req *graphRequest, args []string) graphResponse
}

// routes are the resources the Graph half serves besides POST /$batch:
// those the msgraph Source, its User and its Preflight read, and the
// unfiltered and by-group listings of the two schedule-instance
// collections. Anything else is a 400, as Graph answers a segment it does
// not know.
var routes = []route{
	{"roleManagement/directory/roleAssignmentScheduleInstances", func(s *Server, req *graphRequest, _ []string) graphResponse {
		return s.instances(req, &s.dir.roles)
	}},
	{"identityGovernance/privilegedAccess/group/assignmentScheduleInstances", func(s *Server, req *graphRequest, _ []string) graphResponse {
		return s.instances(req, &s.dir.groups)
	}},
	{"users", func(s *Server, req *graphRequest, _ []string) graphResponse {
		return s.listObjects(req, &userListEndpoint, kindUser)
	}},
	{"users/{}", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.getObject(req, &userEndpoint, kindUser, a[0])
	}},
	{"users/{}/transitiveMemberOf/{}", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.memberOf(req, kindUser, a[0], a[1])
	}},
	{"users/{}/memberOf/{}", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.directMemberOf(req, kindUser, a[0], a[1])
	}},
	{"POST users/{}/checkMemberGroups", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.checkMemberGroups(req, kindUser, a[0])
	}},
	{"servicePrincipals/{}", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.getObject(req, &servicePrincipalEndpoint, kindServicePrincipal, a[0])
	}},
	{"servicePrincipals/{}/transitiveMemberOf/{}", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.memberOf(req, kindServicePrincipal, a[0], a[1])
	}},
	{"servicePrincipals/{}/memberOf/{}", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.directMemberOf(req, kindServicePrincipal, a[0], a[1])
	}},
	{"POST servicePrincipals/{}/checkMemberGroups", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.checkMemberGroups(req, kindServicePrincipal, a[0])
	}},
	{"directory/administrativeUnits", func(s *Server, req *graphRequest, _ []string) graphResponse {
		return s.listObjects(req, &adminUnitEndpoint, kindAdministrativeUnit)
	}},
	{"groups", func(s *Server, req *graphRequest, _ []string) graphResponse {
		return s.listObjects(req, &groupEndpoint, kindGroup)
	}},
	{"groups/{}/members", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.groupMembers(req, a[0])
	}},
	{"identityProtection/riskyUsers", func(s *Server, req *graphRequest, _ []string) graphResponse {
		return s.listRiskyUsers(req)
	}},
	{"identityProtection/riskyUsers/{}", func(s *Server, req *graphRequest, a []string) graphResponse {
		return s.getRiskyUser(req, a[0])
	}},
}

// route serves req by the route its path matches: 405 for a method other
// than the route's, 400 naming the first segment no route knows.
func (s *Server) route(req *graphRequest) graphResponse {
	segs := strings.Split(strings.Trim(req.path, "/"), "/")
	known := 0 // the most leading segments some route matches
	for _, rt := range routes {
		method, path, found := strings.Cut(rt.path, " ")
		if !found {
			method, path = http.MethodGet, rt.path
		}
		pattern := strings.Split(path, "/")
		var args []string
		n := 0
		for n < len(pattern) && n < len(segs) {
			if pattern[n] == "{}" {
				args = append(args, segs[n])
			} else if !strings.EqualFold(pattern[n], segs[n]) {
				break
			}
			n++
		}
		if n == len(pattern) && n == len(segs) {
			if req.method != method {
				return s.methodNotAllowed(req)
			}
			return rt.serve(s, req, args)
		}
		known = max(known, n)
	}
	return s.segmentNotFound(req, segs[min(known, len(segs)-1)])
}

func (s *Server) segmentNotFound(req *graphRequest, seg string) graphResponse {
	return s.graphError(req, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", seg))
}
