package graphtest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// The OData side of the Graph half: JSON objects that keep their property
// order, the query options collections and entities honour ($select,
// $filter, $top, $count, $skiptoken) and the answers that apply them,
// paging through @odata.nextLink.

// SetGraphPageSize changes [Options.GraphPageSize] for later requests.
func (s *Server) SetGraphPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// field and entity are a JSON object that keeps its property order.
type field struct {
	k string
	v any
}

type entity []field

func (e entity) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range e {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := marshalNoEscape(f.k)
		if err != nil {
			return nil, err
		}
		v, err := marshalNoEscape(f.v)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func (e entity) get(k string) (any, bool) {
	for _, f := range e {
		if f.k == k {
			return f.v, true
		}
	}
	return nil, false
}

// keep returns the annotations, the id and the listed properties of e, in
// e's order.
func (e entity) keep(props []string) entity {
	want := map[string]bool{"id": true}
	for _, p := range props {
		want[p] = true
	}
	var out entity
	for _, f := range e {
		if strings.HasPrefix(f.k, "@") || want[f.k] {
			out = append(out, f)
		}
	}
	return out
}

func jsonTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// endpoint describes a Graph resource for query handling.
type endpoint struct {
	context    string   // after $metadata#
	typeName   string   // e.g. microsoft.graph.group, for error messages
	props      []string // selectable properties
	defaults   []string // properties returned without $select (nil: all)
	filterable map[string]filterKind
	// needsFilter, if set, lists properties of which a $filter must
	// restrict at least one, as PIM for Groups demands groupId or
	// principalId.
	needsFilter []string
	directory   bool // directory-style error codes (Request_*)
}

func (ep *endpoint) badRequest() string {
	if ep.directory {
		return "Request_BadRequest"
	}
	return "BadRequest"
}

type odataQuery struct {
	selected []string
	filter   filterExpr
	top      int
	skip     int
	count    bool
}

// parseQuery parses and validates the query options of req for ep. When
// they are invalid it returns ok false and the 400 to answer with.
func (s *Server) parseQuery(req *graphRequest, ep *endpoint) (q odataQuery, resp graphResponse, ok bool) {
	q, msg := parseOptions(req.rawQuery, ep)
	if msg != "" {
		return q, s.graphError(req, http.StatusBadRequest, ep.badRequest(), msg), false
	}
	return q, graphResponse{}, true
}

// parseOptions parses the query options in rawQuery for ep. It returns a
// non-empty message for a 400.
func parseOptions(rawQuery string, ep *endpoint) (odataQuery, string) {
	var q odataQuery
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return q, "Invalid query string: " + err.Error()
	}
	for k, v := range vals {
		if !strings.HasPrefix(k, "$") {
			continue // Graph ignores custom query parameters
		}
		if len(v) > 1 {
			return q, fmt.Sprintf("Query option '%s' was specified more than once, but it must be specified at most once.", k)
		}
		val := v[0]
		switch strings.ToLower(k) {
		case "$select":
			for _, p := range strings.Split(val, ",") {
				p = strings.TrimSpace(p)
				canon := ""
				for _, known := range ep.props {
					if strings.EqualFold(known, p) {
						canon = known
					}
				}
				if canon == "" {
					return q, fmt.Sprintf("Could not find a property named '%s' on type '%s'.", p, ep.typeName)
				}
				q.selected = append(q.selected, canon)
			}
		case "$filter":
			if ep.filterable == nil {
				return q, "Query option '$filter' is not supported by graphtest on this resource."
			}
			if q.filter, err = parseFilter(val, ep.filterable); err != nil {
				return q, "Invalid filter clause: " + err.Error()
			}
			if q.filter == nil {
				return q, "Invalid filter clause: empty expression."
			}
		case "$top":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || (ep.directory && n > 999) {
				return q, fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and 999 inclusive.", val)
			}
			q.top = n
		case "$skiptoken":
			raw, err := base64.RawURLEncoding.DecodeString(val)
			n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "graphtest:"))
			if err != nil || err2 != nil || !strings.HasPrefix(string(raw), "graphtest:") || n < 0 {
				return q, "Invalid $skiptoken."
			}
			q.skip = n
		case "$count":
			switch val {
			case "true":
				q.count = true
			case "false":
			default:
				return q, "Invalid value for $count: '" + val + "'."
			}
		default:
			return q, fmt.Sprintf("Query option '%s' is not supported by graphtest.", k)
		}
	}
	if len(ep.needsFilter) > 0 && !slices.ContainsFunc(ep.needsFilter, q.filter.restricts) {
		return q, fmt.Sprintf("The request must filter on %s, e.g. $filter=%s eq '{id}'.",
			strings.Join(ep.needsFilter, " or "), ep.needsFilter[0])
	}
	return q, ""
}

// ---- $filter ----

type filterKind int

const (
	filterGUID filterKind = iota
	filterBool
)

type clause struct {
	prop   string
	kind   filterKind
	values []string // lower-case GUIDs
	b      bool
}

// filterExpr is a conjunction of clauses.
type filterExpr []clause

type token struct {
	lit  bool // a quoted string
	text string
}

func lexFilter(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, token{text: string(c)})
			i++
		case c == '\'':
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated string literal")
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			toks = append(toks, token{lit: true, text: b.String()})
		case c == '_' || c == '/' || c == '.' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c|0x20 && c|0x20 <= 'z'):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '/' || s[j] == '.' || s[j] == '-' || ('0' <= s[j] && s[j] <= '9') || ('a' <= s[j]|0x20 && s[j]|0x20 <= 'z')) {
				j++
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	return toks, nil
}

// parseFilter parses clauses joined by "and", each "prop eq 'guid'",
// "prop in ('guid', ...)" or "prop eq true|false". Every quoted value must
// be a GUID.
func parseFilter(s string, allowed map[string]filterKind) (filterExpr, error) {
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	pos := 0
	next := func() (token, bool) {
		if pos >= len(toks) {
			return token{}, false
		}
		pos++
		return toks[pos-1], true
	}
	value := func(kind filterKind) (string, bool, error) {
		t, ok := next()
		if !ok {
			return "", false, fmt.Errorf("missing value")
		}
		if kind == filterBool {
			switch {
			case !t.lit && strings.EqualFold(t.text, "true"):
				return "", true, nil
			case !t.lit && strings.EqualFold(t.text, "false"):
				return "", false, nil
			}
			return "", false, fmt.Errorf("expected true or false, got %q", t.text)
		}
		if !t.lit {
			return "", false, fmt.Errorf("expected a quoted GUID, got %q", t.text)
		}
		if !graphcheck.IsGUID(t.text) {
			return "", false, fmt.Errorf("'%s' is not a valid GUID", t.text)
		}
		return strings.ToLower(t.text), false, nil
	}
	var expr filterExpr
	for {
		t, ok := next()
		if !ok {
			if len(expr) == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("expression ends after 'and'")
		}
		if t.lit {
			return nil, fmt.Errorf("expected a property name, got '%s'", t.text)
		}
		var cl clause
		for name, kind := range allowed {
			if strings.EqualFold(name, t.text) {
				cl.prop, cl.kind = name, kind
			}
		}
		if cl.prop == "" {
			return nil, fmt.Errorf("filtering on property '%s' is not supported", t.text)
		}
		op, _ := next()
		switch {
		case !op.lit && strings.EqualFold(op.text, "eq"):
			v, b, err := value(cl.kind)
			if err != nil {
				return nil, err
			}
			cl.b = b
			if cl.kind == filterGUID {
				cl.values = []string{v}
			}
		case !op.lit && strings.EqualFold(op.text, "in") && cl.kind == filterGUID:
			if t, _ := next(); t.lit || t.text != "(" {
				return nil, fmt.Errorf("expected '(' after 'in'")
			}
			for {
				v, _, err := value(filterGUID)
				if err != nil {
					return nil, err
				}
				cl.values = append(cl.values, v)
				t, _ := next()
				if !t.lit && t.text == ")" {
					break
				}
				if t.lit || t.text != "," {
					return nil, fmt.Errorf("expected ',' or ')' in list")
				}
			}
		default:
			return nil, fmt.Errorf("unsupported operator '%s' for property '%s'", op.text, cl.prop)
		}
		expr = append(expr, cl)
		t, ok = next()
		if !ok {
			return expr, nil
		}
		if t.lit || !strings.EqualFold(t.text, "and") {
			return nil, fmt.Errorf("unsupported token '%s' (only 'and' joins clauses)", t.text)
		}
	}
}

// values returns the GUIDs prop is restricted to and whether it is
// restricted at all.
func (f filterExpr) values(prop string) ([]string, bool) {
	var out []string
	found := false
	for _, c := range f {
		if c.prop != prop {
			continue
		}
		if !found {
			out, found = c.values, true
			continue
		}
		var both []string
		for _, v := range out {
			for _, w := range c.values {
				if v == w {
					both = append(both, v)
				}
			}
		}
		out = both
	}
	return out, found
}

func (f filterExpr) match(e entity) bool {
	for _, c := range f {
		v, _ := e.get(c.prop)
		switch c.kind {
		case filterBool:
			if b, _ := v.(bool); b != c.b {
				return false
			}
		default:
			str, _ := v.(string)
			hit := false
			for _, want := range c.values {
				if strings.EqualFold(str, want) {
					hit = true
				}
			}
			if !hit {
				return false
			}
		}
	}
	return true
}

// restricts reports whether f restricts prop.
func (f filterExpr) restricts(prop string) bool {
	_, ok := f.values(prop)
	return ok
}

// ---- answers ----

func (s *Server) metadata() string { return s.GraphURL() + "/$metadata#" }

func selectSuffix(sel []string) string {
	if len(sel) == 0 {
		return ""
	}
	return "(" + strings.Join(sel, ",") + ")"
}

// shape returns e as q (its $select) or else ep (its defaults) shapes it.
func (ep *endpoint) shape(q odataQuery, e entity) entity {
	switch {
	case len(q.selected) > 0:
		return e.keep(q.selected)
	case ep.defaults != nil:
		return e.keep(ep.defaults)
	}
	return e
}

// collection answers with the page of the items q's $filter keeps that q
// ($top, $skiptoken) and the page size select.
func (s *Server) collection(req *graphRequest, ep *endpoint, q odataQuery, all []entity) graphResponse {
	items := []entity{}
	for _, it := range all {
		if q.filter.match(it) {
			items = append(items, it)
		}
	}
	s.mu.Lock()
	size := s.pageSize
	s.mu.Unlock()
	if q.top > 0 && (size <= 0 || q.top < size) {
		size = q.top
	}
	total := len(items)
	start := min(q.skip, total)
	end := total
	if size > 0 && start+size < total {
		end = start + size
	}
	page := make([]entity, 0, end-start)
	for _, it := range items[start:end] {
		page = append(page, ep.shape(q, it))
	}
	out := entity{{"@odata.context", s.metadata() + ep.context + selectSuffix(q.selected)}}
	if q.count {
		out = append(out, field{"@odata.count", total})
	}
	next := ""
	if end < total {
		next = s.nextLink(req, end)
	}
	if req.fault != nil {
		switch req.fault.Kind {
		case FaultNextLink:
			next = req.fault.NextLink
		case FaultNextLinkLoop:
			next = s.GraphURL() + req.path
			if req.rawQuery != "" {
				next += "?" + req.rawQuery
			}
		}
	}
	if next != "" {
		out = append(out, field{"@odata.nextLink", next})
	}
	out = append(out, field{"value", page})
	return s.ok(req, out)
}

func (s *Server) nextLink(req *graphRequest, offset int) string {
	var parts []string
	for _, p := range strings.Split(req.rawQuery, "&") {
		k, _, _ := strings.Cut(p, "=")
		dk, err := url.QueryUnescape(k)
		if p == "" || err != nil || strings.EqualFold(dk, "$skiptoken") {
			continue
		}
		if _, v, ok := strings.Cut(p, "="); ok {
			dv, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			p = escapeQuery(dk) + "=" + escapeQuery(dv)
		} else {
			p = escapeQuery(dk)
		}
		parts = append(parts, p)
	}
	tok := base64.RawURLEncoding.EncodeToString([]byte("graphtest:" + strconv.Itoa(offset)))
	parts = append(parts, "$skiptoken="+tok)
	return s.GraphURL() + req.path + "?" + strings.Join(parts, "&")
}

// queryUnescaper keeps OData punctuation readable in the links it builds,
// as Graph's own links do.
var queryUnescaper = strings.NewReplacer("+", "%20", "%24", "$", "%27", "'", "%2C", ",", "%28", "(", "%29", ")")

func escapeQuery(s string) string { return queryUnescaper.Replace(url.QueryEscape(s)) }

// single answers with one entity.
func (s *Server) single(req *graphRequest, ep *endpoint, q odataQuery, e entity) graphResponse {
	out := entity{{"@odata.context", s.metadata() + ep.context + selectSuffix(q.selected) + "/$entity"}}
	return s.ok(req, append(out, ep.shape(q, e)...))
}
