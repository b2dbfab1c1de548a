package config

import (
	"errors"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pimguard/pimguard/forwardauth"
	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
)

// rules reads the ordered list of rules:
//
//	rules:
//	  - name: reset-password          # optional; default the first pattern
//	    match: "POST /api/users/{id}/reset-password"   # or a list of patterns
//	    require: {role: Helpdesk Administrator}
func (p *parser) rules(n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "rules must be a list of {match, require}")
		return
	}
	if len(n.Content) == 0 {
		p.errorf(n, "rules is empty: every request would be denied")
		return
	}
	before := len(p.errs)
	for _, rn := range n.Content {
		var r forwardauth.Rule
		p.fields(rn, "a rule", map[string]func(*yaml.Node){
			"name":  func(v *yaml.Node) { r.Name, _ = p.scalar(v, "name") },
			"match": func(v *yaml.Node) { r.Patterns = p.strings(v, "match") },
			"require": func(v *yaml.Node) {
				r.Access, r.Require = p.access(v)
			},
		}, "match", "require")
		p.file.Rules = append(p.file.Rules, r)
		p.ruleNodes = append(p.ruleNodes, rn)
	}
	if len(p.errs) > before {
		return // the rules are incomplete: their order says nothing yet
	}
	// Patterns, names and what one rule's patterns shadow of another's.
	var re *forwardauth.RuleError
	if err := forwardauth.ValidateRules(p.file.Rules); errors.As(err, &re) {
		at := p.ruleNodes[re.Index]
		if m := patternNode(at, re.Pattern); m != nil {
			at = m
		}
		p.errorf(at, "%v", strings.TrimPrefix(re.Error(), "forwardauth: "))
	} else if err != nil {
		p.errorf(n, "%v", err)
	}
}

// patternNode is the node of rule node rn's match that holds pattern.
func patternNode(rn *yaml.Node, pattern string) *yaml.Node {
	for i := 0; i+1 < len(rn.Content); i += 2 {
		if rn.Content[i].Value != "match" {
			continue
		}
		m := rn.Content[i+1]
		if m.Kind == yaml.ScalarNode {
			return m
		}
		for _, c := range m.Content {
			if strings.TrimSpace(c.Value) == pattern {
				return c
			}
		}
	}
	return nil
}

// access reads a rule's require: "authenticated", "public", or a
// requirement.
func (p *parser) access(n *yaml.Node) (forwardauth.Access, middleware.Requirement) {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "authenticated":
			return forwardauth.AccessAuthenticated, middleware.Requirement{}
		case "public":
			return forwardauth.AccessPublic, middleware.Requirement{}
		}
		p.errorf(n, "require %q: want authenticated, public or a requirement such as {role: Helpdesk Administrator}", n.Value)
		return forwardauth.AccessRequirement, middleware.Requirement{}
	}
	return forwardauth.AccessRequirement, p.requirement(n)
}

// requirementKeys are the keys of a requirement mapping, each with exactly
// one of them.
var requirementKeys = []string{"role", "group-member", "group-owner", "member-of", "scope", "app-role", "auth-context", "any-of", "all-of"}

// requirement reads one requirement mapping, recursively. Every leaf is
// validated where it is written, so an error points at its line.
func (p *parser) requirement(n *yaml.Node) middleware.Requirement {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		p.errorf(n, "a requirement is a mapping with one key, one of %s (authenticated and public stand alone)", strings.Join(requirementKeys, ", "))
		return middleware.Requirement{}
	}
	k, v := n.Content[0], n.Content[1]
	var r middleware.Requirement
	before := len(p.errs)
	switch k.Value {
	case "role":
		r = p.role(v)
	case "group-member", "group-owner", "member-of":
		id, ok := p.scalar(v, k.Value)
		if !ok {
			return r
		}
		if !graphcheck.IsGUID(id) {
			p.errorf(v, "%s %q is not a group object ID (a GUID)", k.Value, id)
			return r
		}
		r = map[string]func(string) middleware.Requirement{
			"group-member": middleware.GroupMember, "group-owner": middleware.GroupOwner, "member-of": middleware.MemberOf,
		}[k.Value](id)
	case "scope", "app-role", "auth-context":
		s, ok := p.scalar(v, k.Value)
		if !ok {
			return r
		}
		r = map[string]func(string) middleware.Requirement{
			"scope": middleware.Scope, "app-role": middleware.AppRole, "auth-context": middleware.AuthContext,
		}[k.Value](s)
	case "any-of", "all-of":
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			p.errorf(v, "%s must be a non-empty list of requirements", k.Value)
			return r
		}
		subs := make([]middleware.Requirement, 0, len(v.Content))
		for _, c := range v.Content {
			subs = append(subs, p.requirement(c))
		}
		if k.Value == "any-of" {
			return middleware.AnyOf(subs...)
		}
		return middleware.AllOf(subs...)
	default:
		p.errorf(k, "unknown requirement %q (known: %s)", k.Value, strings.Join(requirementKeys, ", "))
		return r
	}
	if len(p.errs) == before {
		if err := r.Validate(); err != nil {
			p.errorf(v, "%v", strings.TrimPrefix(err.Error(), "middleware: "))
		}
	}
	return r
}

// role reads a role requirement: a built-in role's name or a role
// definition ID, tenant-wide, or {name, administrative-unit} for a role
// scoped to an administrative unit.
func (p *parser) role(n *yaml.Node) middleware.Requirement {
	var nameNode, unitNode *yaml.Node
	if n.Kind == yaml.MappingNode {
		p.fields(n, "role", map[string]func(*yaml.Node){
			"name":                func(v *yaml.Node) { nameNode = v },
			"administrative-unit": func(v *yaml.Node) { unitNode = v },
		}, "name")
		if nameNode == nil {
			return middleware.Requirement{}
		}
	} else {
		nameNode = n
	}
	name, ok := p.scalar(nameNode, "role")
	if !ok {
		return middleware.Requirement{}
	}
	id := name
	if !graphcheck.IsGUID(name) {
		var known bool
		if id, known = middleware.BuiltInRoleID(name); !known {
			msg := "unknown role %q: not a built-in Entra role's name (give a custom role's definition ID)"
			if s := middleware.SuggestBuiltInRole(name); s != "" {
				p.errorf(nameNode, msg+"; did you mean %q?", name, s)
			} else {
				p.errorf(nameNode, msg, name)
			}
			return middleware.Requirement{}
		}
	}
	if unitNode == nil {
		return middleware.Role(id)
	}
	unit, ok := p.scalar(unitNode, "administrative-unit")
	if !ok {
		return middleware.Requirement{}
	}
	if !graphcheck.IsGUID(unit) {
		p.errorf(unitNode, "administrative-unit %q is not an administrative unit's object ID (a GUID)", unit)
		return middleware.Requirement{}
	}
	return middleware.RoleInScope(id, middleware.AdministrativeUnitScope(unit))
}
