package graphtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// maxBodyBytes bounds the request bodies the Graph emulator reads.
const maxBodyBytes = 4 << 20

// SetGraphPageSize changes [Options.GraphPageSize] for later requests.
func (s *Server) SetGraphPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// SetRequireGraphAuth changes [Options.RequireGraphAuth] for later requests.
func (s *Server) SetRequireGraphAuth(require bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requireAuth = require
}

// splitGraphPath splits /v1.0/... or /beta/... into the version and the rest
// (which starts with "/").
func splitGraphPath(p string) (version, rest string, ok bool) {
	for _, v := range []string{"v1.0", "beta"} {
		if p == "/"+v {
			return v, "/", true
		}
		if r, found := strings.CutPrefix(p, "/"+v+"/"); found {
			return v, "/" + r, true
		}
	}
	return "", "", false
}

func bearerToken(h http.Header) string {
	a := h.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// graphRequest is one Graph call, standalone or inside a $batch.
type graphRequest struct {
	ctx      context.Context
	method   string
	version  string // "v1.0" or "beta"
	path     string // below the version, starting with "/"
	rawQuery string
	header   http.Header
	body     []byte
	bearer   string
	batchID  string
	fault    *Fault // a FaultNextLink* fault to apply to a collection answer
}

// graphAction tells the transport to misbehave instead of answering.
type graphAction int

const (
	actAnswer graphAction = iota
	actDrop
	actHang
)

type graphResponse struct {
	status int
	header http.Header
	body   []byte
	action graphAction
}

func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request) {
	version, rest, _ := splitGraphPath(r.URL.Path)
	req := &graphRequest{
		ctx: r.Context(), method: r.Method, version: version, path: rest,
		rawQuery: r.URL.RawQuery, header: r.Header, bearer: bearerToken(r.Header),
	}
	body, status, msg := readBody(r)
	req.body = body
	var resp graphResponse
	switch {
	case msg != "":
		resp = s.graphError(req, status, "BadRequest", msg)
	case strings.EqualFold(rest, "/$batch"):
		resp = s.handleBatch(req)
	default:
		resp = s.handleGraph(req)
	}
	switch resp.action {
	case actDrop:
		dropConnection(w)
		return
	case actHang:
		s.hang(r.Context())
		panic(http.ErrAbortHandler) // close the connection without an answer
	}
	for k, vs := range resp.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// readBody reads a request body, gunzipping it when Content-Encoding says
// gzip (Kiota's compression handler sends request bodies that way).
func readBody(r *http.Request) ([]byte, int, string) {
	var rd io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, http.StatusBadRequest, "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, http.StatusUnsupportedMediaType, "Content-Encoding '" + enc + "' is not supported."
	}
	body, err := io.ReadAll(io.LimitReader(rd, maxBodyBytes))
	if err != nil {
		return nil, http.StatusBadRequest, "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
	}
	return body, 0, ""
}

func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http closes the connection
}

// hang blocks until ctx is done or the server closes; it never sleeps.
func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
}

// handleGraph answers one Graph request (not $batch itself): faults first,
// then authentication, then the route.
func (s *Server) handleGraph(req *graphRequest) graphResponse {
	if resp, done := s.applyFault(req); done {
		return resp
	}
	if resp, ok := s.checkAuth(req); !ok {
		return resp
	}
	return s.route(req)
}

// applyFault consumes the fault matching req, if any. It reports done when
// the fault replaces the answer; FaultNextLink* faults are attached to req.
func (s *Server) applyFault(req *graphRequest) (graphResponse, bool) {
	f := s.takeGraphFault(req)
	if f == nil {
		return graphResponse{}, false
	}
	switch f.Kind {
	case FaultDropConnection:
		return graphResponse{action: actDrop}, true
	case FaultHang:
		return graphResponse{action: actHang}, true
	case FaultNextLink, FaultNextLinkLoop:
		req.fault = f
		return graphResponse{}, false
	}
	return s.faultResponse(req, f), true
}

func (s *Server) checkAuth(req *graphRequest) (graphResponse, bool) {
	s.mu.Lock()
	require := s.requireAuth
	s.mu.Unlock()
	if require && req.bearer == "" {
		r := s.graphError(req, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		r.header.Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
		return r, false
	}
	return graphResponse{}, true
}

func (s *Server) faultResponse(req *graphRequest, f *Fault) graphResponse {
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
		if f.Body != "" {
			status = http.StatusOK
		}
	}
	var resp graphResponse
	switch {
	case f.Body != "":
		resp = graphResponse{status: status, header: s.baseHeader(req, false), body: []byte(f.Body)}
	case status == http.StatusTooManyRequests:
		resp = s.throttled(req, orDefault(f.Code, "TooManyRequests"), orDefault(f.Message, "Please retry again later."))
	default:
		code, msg := f.Code, f.Message
		if code == "" {
			code = defaultErrorCode(status)
		}
		if msg == "" {
			msg = "graphtest: injected fault"
		}
		resp = s.graphError(req, status, code, msg)
	}
	if f.RetryAfter != "" {
		resp.header.Set("Retry-After", f.RetryAfter)
	}
	return resp
}

// throttled answers 429 with the body of Microsoft's throttling sample and
// no Retry-After header (callers add one if they want it).
func (s *Server) throttled(req *graphRequest, code, msg string) graphResponse {
	return graphResponse{status: http.StatusTooManyRequests, header: s.baseHeader(req, false), body: s.encode(entity{{"error", entity{
		{"code", code},
		{"innerError", entity{
			{"code", "429"},
			{"date", s.clock.Now().UTC().Format("2006-01-02T15:04:05")},
			{"message", "Please retry after"},
			{"request-id", newGUID()},
			{"status", "429"},
		}},
		{"message", msg},
	}}})}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func defaultErrorCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "InvalidAuthenticationToken"
	case http.StatusForbidden:
		return "Authorization_RequestDenied"
	case http.StatusNotFound:
		return "Request_ResourceNotFound"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	}
	return "InternalServerError"
}

// baseHeader returns the headers every Graph answer carries.
func (s *Server) baseHeader(req *graphRequest, odata bool) http.Header {
	h := http.Header{}
	h.Set("Cache-Control", "no-cache")
	if odata {
		h.Set("OData-Version", "4.0")
		h.Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("request-id", newGUID())
	if id := req.header.Get("client-request-id"); id != "" {
		h.Set("client-request-id", id)
	}
	return h
}

// graphError answers with Graph's error envelope.
func (s *Server) graphError(req *graphRequest, status int, code, message string) graphResponse {
	h := s.baseHeader(req, false)
	clientID := req.header.Get("client-request-id")
	if clientID == "" {
		clientID = h.Get("request-id")
	}
	body := entity{{"error", entity{
		{"code", code},
		{"message", message},
		{"innerError", entity{
			{"date", s.clock.Now().UTC().Format("2006-01-02T15:04:05")},
			{"request-id", h.Get("request-id")},
			{"client-request-id", clientID},
		}},
	}}}
	return graphResponse{status: status, header: h, body: s.encode(body)}
}

func (s *Server) ok(req *graphRequest, body entity) graphResponse {
	return graphResponse{status: http.StatusOK, header: s.baseHeader(req, true), body: s.encode(body)}
}

func (s *Server) encode(v any) []byte {
	b, err := marshalNoEscape(v)
	if err != nil {
		panic("graphtest: encoding response: " + err.Error())
	}
	return b
}

func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
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

// ---- OData query options ----

// endpoint describes a Graph resource for query handling.
type endpoint struct {
	context    string   // after $metadata#
	typeName   string   // e.g. microsoft.graph.group, for error messages
	props      []string // selectable properties
	defaults   []string // properties returned without $select (nil: all)
	filterable map[string]filterKind
	directory  bool // directory-style error codes (Request_*)
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

// parseQuery parses and validates the query options of req for ep. It
// returns a non-empty message for a 400.
func (s *Server) parseQuery(req *graphRequest, ep *endpoint) (odataQuery, string) {
	var q odataQuery
	vals, err := url.ParseQuery(req.rawQuery)
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

func (f filterExpr) without(prop string) filterExpr {
	var out filterExpr
	for _, c := range f {
		if c.prop != prop {
			out = append(out, c)
		}
	}
	return out
}

// ---- answers ----

func (s *Server) metadata(req *graphRequest) string {
	return s.URL + "/" + req.version + "/$metadata#"
}

func selectSuffix(sel []string) string {
	if len(sel) == 0 {
		return ""
	}
	return "(" + strings.Join(sel, ",") + ")"
}

// collection answers with one page of items (already filtered).
func (s *Server) collection(req *graphRequest, ep *endpoint, q odataQuery, items []entity) graphResponse {
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
		switch {
		case len(q.selected) > 0:
			it = it.keep(q.selected)
		case ep.defaults != nil:
			it = it.keep(ep.defaults)
		}
		page = append(page, it)
	}
	out := entity{{"@odata.context", s.metadata(req) + ep.context + selectSuffix(q.selected)}}
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
			next = s.URL + "/" + req.version + req.path
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
	return s.URL + "/" + req.version + req.path + "?" + strings.Join(parts, "&")
}

// queryUnescaper keeps OData punctuation readable in the links it builds,
// as Graph's own links do.
var queryUnescaper = strings.NewReplacer("+", "%20", "%24", "$", "%27", "'", "%2C", ",", "%28", "(", "%29", ")")

func escapeQuery(s string) string { return queryUnescaper.Replace(url.QueryEscape(s)) }

// single answers with one entity.
func (s *Server) single(req *graphRequest, ep *endpoint, q odataQuery, e entity) graphResponse {
	switch {
	case len(q.selected) > 0:
		e = e.keep(q.selected)
	case ep.defaults != nil:
		e = e.keep(ep.defaults)
	}
	out := entity{{"@odata.context", s.metadata(req) + ep.context + selectSuffix(q.selected) + "/$entity"}}
	return s.ok(req, append(out, e...))
}

// ---- routing ----

const fbcuPrefix = "filterbycurrentuser("

func (s *Server) route(req *graphRequest) graphResponse {
	segs := strings.Split(strings.Trim(req.path, "/"), "/")
	low := make([]string, len(segs))
	for i, sg := range segs {
		low[i] = strings.ToLower(sg)
	}
	at := func(i int) string {
		if i < len(low) {
			return low[i]
		}
		return ""
	}
	notFound := func(i int) graphResponse {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", segs[min(i, len(segs)-1)]))
	}
	methodNotAllowed := func() graphResponse {
		return s.graphError(req, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
	}
	get := func(h func() graphResponse) graphResponse {
		if req.method != http.MethodGet {
			return methodNotAllowed()
		}
		return h()
	}
	switch at(0) {
	case "$batch":
		return s.graphError(req, http.StatusBadRequest, "BadRequest", "A $batch request cannot contain a nested $batch request.")
	case "rolemanagement":
		if at(1) != "directory" {
			return notFound(1)
		}
		kind := at(2)
		switch kind {
		case "roleassignmentscheduleinstances", "roleeligibilityscheduleinstances":
			switch {
			case len(low) == 3:
				return get(func() graphResponse { return s.roleInstances(req, kind == "roleeligibilityscheduleinstances", false) })
			case len(low) == 4 && strings.HasPrefix(at(3), fbcuPrefix):
				return get(func() graphResponse {
					if resp, ok := s.checkOnPrincipal(req, segs[3]); !ok {
						return resp
					}
					return s.roleInstances(req, kind == "roleeligibilityscheduleinstances", true)
				})
			}
			return notFound(3)
		case "roleassignments":
			if len(low) == 3 {
				return get(func() graphResponse { return s.roleAssignments(req) })
			}
			return notFound(3)
		case "transitiveroleassignments":
			if len(low) == 3 && req.version == "beta" {
				return get(func() graphResponse { return s.transitiveRoleAssignments(req) })
			}
		}
		return notFound(2)
	case "identitygovernance":
		if at(1) != "privilegedaccess" {
			return notFound(1)
		}
		if at(2) != "group" {
			return notFound(2)
		}
		kind := at(3)
		if kind != "assignmentscheduleinstances" && kind != "eligibilityscheduleinstances" {
			return notFound(3)
		}
		switch {
		case len(low) == 4:
			return get(func() graphResponse { return s.groupInstances(req, kind == "eligibilityscheduleinstances", false) })
		case len(low) == 5 && strings.HasPrefix(at(4), fbcuPrefix):
			return get(func() graphResponse {
				if resp, ok := s.checkOnPrincipal(req, segs[4]); !ok {
					return resp
				}
				return s.groupInstances(req, kind == "eligibilityscheduleinstances", true)
			})
		}
		return notFound(4)
	case "me":
		oid, resp, ok := s.callerOID(req, true)
		if !ok {
			return resp
		}
		return s.objectRoute(req, kindUser, oid, segs[1:], low[1:])
	case "users":
		if len(low) == 1 {
			return get(func() graphResponse { return s.listObjects(req, &userListEndpoint, kindUser) })
		}
		return s.objectRoute(req, kindUser, segs[1], segs[2:], low[2:])
	case "serviceprincipals":
		if len(low) == 1 {
			return get(func() graphResponse { return s.listObjects(req, &servicePrincipalListEndpoint, kindServicePrincipal) })
		}
		return s.objectRoute(req, kindServicePrincipal, segs[1], segs[2:], low[2:])
	case "groups":
		if len(low) == 1 {
			return get(func() graphResponse { return s.listObjects(req, &groupEndpoint, kindGroup) })
		}
		return s.objectRoute(req, kindGroup, segs[1], segs[2:], low[2:])
	case "directoryobjects":
		if len(low) == 2 {
			return get(func() graphResponse { return s.getObject(req, 0, segs[1]) })
		}
		return notFound(2)
	case "identityprotection", "riskyusers":
		// v1.0 and beta: /identityProtection/riskyUsers; beta only: /riskyUsers.
		base, context := 1, "riskyUsers"
		if at(0) == "identityprotection" {
			if at(1) != "riskyusers" {
				return notFound(1)
			}
			base, context = 2, "identityProtection/riskyUsers"
		} else if req.version != "beta" {
			return notFound(0)
		}
		if resp, ok := s.admitRiskyUsers(req); !ok {
			return resp
		}
		switch len(low) - base {
		case 0:
			return get(func() graphResponse { return s.listRiskyUsers(req, context) })
		case 1:
			return get(func() graphResponse { return s.getRiskyUser(req, context, segs[base]) })
		}
		return notFound(base + 1)
	}
	return notFound(0)
}

// objectRoute serves /users/{id}/..., /servicePrincipals/{id}/...,
// /groups/{id}/... and /me/....
func (s *Server) objectRoute(req *graphRequest, kind objKind, id string, rest, low []string) graphResponse {
	notFound := func(seg string) graphResponse {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", seg))
	}
	methodNotAllowed := s.graphError(req, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
	switch {
	case len(low) == 0:
		if req.method != http.MethodGet {
			return methodNotAllowed
		}
		return s.getObject(req, kind, id)
	case low[0] == "memberof" || low[0] == "transitivememberof":
		cast := ""
		if len(low) == 2 {
			cast = low[1]
		} else if len(low) > 2 {
			return notFound(rest[2])
		}
		if req.method != http.MethodGet {
			return methodNotAllowed
		}
		return s.memberOf(req, kind, id, low[0] == "transitivememberof", cast)
	case low[0] == "revokesigninsessions" && len(low) == 1 && kind == kindUser:
		if req.method != http.MethodPost {
			return methodNotAllowed
		}
		return s.revokeSessions(req, id)
	}
	return notFound(rest[0])
}

// ---- directory objects ----

var userEndpoint = endpoint{
	context:  "users",
	typeName: "microsoft.graph.user",
	props: []string{"id", "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
		"officeLocation", "preferredLanguage", "surname", "userPrincipalName", "accountEnabled", "userType",
		"createdDateTime", "lastPasswordChangeDateTime", "signInSessionsValidFromDateTime"},
	defaults: []string{"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
		"officeLocation", "preferredLanguage", "surname", "userPrincipalName"},
	directory: true,
}

var servicePrincipalEndpoint = endpoint{
	context:   "servicePrincipals",
	typeName:  "microsoft.graph.servicePrincipal",
	props:     []string{"id", "accountEnabled", "appId", "displayName", "servicePrincipalType"},
	directory: true,
}

// directoryListFilters are the $filter properties of GET /users and
// GET /servicePrincipals.
var directoryListFilters = map[string]filterKind{"id": filterGUID, "accountEnabled": filterBool}

var userListEndpoint = withFilters(userEndpoint, directoryListFilters)

var servicePrincipalListEndpoint = withFilters(servicePrincipalEndpoint, directoryListFilters)

func withFilters(ep endpoint, f map[string]filterKind) endpoint {
	ep.filterable = f
	return ep
}

var groupProps = []string{"id", "description", "displayName", "groupTypes", "isAssignableToRole", "mailEnabled", "securityEnabled", "createdDateTime"}

var groupEndpoint = endpoint{
	context:    "groups",
	typeName:   "microsoft.graph.group",
	props:      groupProps,
	filterable: map[string]filterKind{"id": filterGUID, "isAssignableToRole": filterBool},
	directory:  true,
}

var directoryObjectEndpoint = endpoint{
	context:   "directoryObjects",
	typeName:  "microsoft.graph.directoryObject",
	directory: true,
}

func init() {
	seen := map[string]bool{}
	for _, ps := range [][]string{userEndpoint.props, servicePrincipalEndpoint.props, groupProps} {
		for _, p := range ps {
			if !seen[p] {
				seen[p] = true
				directoryObjectEndpoint.props = append(directoryObjectEndpoint.props, p)
			}
		}
	}
}

// objectEntity renders o; withType adds @odata.type. Callers hold s.dir.mu.
func objectEntity(o *dirObject, withType bool) entity {
	var e entity
	if withType {
		e = append(e, field{"@odata.type", "#microsoft.graph." + o.kind.String()})
	}
	switch o.kind {
	case kindUser:
		e = append(e,
			field{"id", o.id},
			field{"businessPhones", []string{}},
			field{"displayName", o.displayName},
			field{"givenName", nil},
			field{"jobTitle", nil},
			field{"mail", o.upn},
			field{"mobilePhone", nil},
			field{"officeLocation", nil},
			field{"preferredLanguage", nil},
			field{"surname", nil},
			field{"userPrincipalName", o.upn},
			field{"accountEnabled", o.accountEnabled},
			field{"userType", "Member"},
			field{"createdDateTime", jsonTime(o.created)},
			field{"lastPasswordChangeDateTime", jsonTime(o.lastPasswordChange)},
			field{"signInSessionsValidFromDateTime", jsonTime(o.sessionsValidFrom)},
		)
	case kindServicePrincipal:
		e = append(e,
			field{"id", o.id},
			field{"accountEnabled", o.accountEnabled},
			field{"appId", o.appID},
			field{"displayName", o.displayName},
			field{"servicePrincipalType", "Application"},
		)
	default:
		e = append(e,
			field{"id", o.id},
			field{"description", nil},
			field{"displayName", o.displayName},
			field{"groupTypes", []string{}},
			field{"isAssignableToRole", o.roleAssignable},
			field{"mailEnabled", false},
			field{"securityEnabled", true},
			field{"createdDateTime", jsonTime(o.created)},
		)
	}
	return e
}

func endpointFor(kind objKind) *endpoint {
	switch kind {
	case kindUser:
		return &userEndpoint
	case kindServicePrincipal:
		return &servicePrincipalEndpoint
	case kindGroup:
		return &groupEndpoint
	}
	return &directoryObjectEndpoint
}

func (s *Server) resourceNotFound(req *graphRequest, id string) graphResponse {
	return s.graphError(req, http.StatusNotFound, "Request_ResourceNotFound",
		fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id))
}

// findObject looks id up as kind (0: any kind); users are also found by
// userPrincipalName. Callers hold s.dir.mu.
func (s *Server) findObject(kind objKind, id string) *dirObject {
	o := s.dir.lookup(id)
	if o == nil && (kind == kindUser || kind == 0) {
		for _, cand := range s.dir.objects {
			if cand.kind == kindUser && strings.EqualFold(cand.upn, id) {
				o = cand
			}
		}
	}
	if o == nil || (kind != 0 && o.kind != kind) {
		return nil
	}
	return o
}

func (s *Server) getObject(req *graphRequest, kind objKind, id string) graphResponse {
	ep := endpointFor(kind)
	q, msg := s.parseQuery(req, ep)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, ep.badRequest(), msg)
	}
	s.dir.mu.Lock()
	o := s.findObject(kind, id)
	var e entity
	if o != nil {
		e = objectEntity(o, kind == 0)
	}
	s.dir.mu.Unlock()
	if o == nil {
		return s.resourceNotFound(req, id)
	}
	if kind == 0 && len(q.selected) == 0 && o.kind == kindUser {
		e = e.keep(userEndpoint.defaults)
	}
	return s.single(req, ep, q, e)
}

func (s *Server) memberOf(req *graphRequest, kind objKind, id string, transitive bool, cast string) graphResponse {
	ep := endpoint{
		context:    "directoryObjects",
		typeName:   "microsoft.graph.directoryObject",
		props:      groupProps,
		filterable: groupEndpoint.filterable,
		directory:  true,
	}
	// Graph accepts the namespace alias too: the Go SDK sends /graph.group.
	if rest, ok := strings.CutPrefix(cast, "graph."); ok {
		cast = "microsoft.graph." + rest
	}
	switch cast {
	case "":
	case "microsoft.graph.group":
		ep.context, ep.typeName = "groups", "microsoft.graph.group"
	case "microsoft.graph.directoryrole":
		ep.context = "directoryRoles"
	case "microsoft.graph.administrativeunit":
		ep.context = "administrativeUnits"
	default:
		return s.graphError(req, http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", cast))
	}
	q, msg := s.parseQuery(req, &ep)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, "Request_BadRequest", msg)
	}
	if q.filter != nil && !strings.EqualFold(req.header.Get("ConsistencyLevel"), "eventual") {
		return s.graphError(req, http.StatusBadRequest, "Request_UnsupportedQuery",
			"$filter on this relationship requires the ConsistencyLevel: eventual header (advanced query).")
	}
	now := s.clock.Now()
	s.dir.mu.Lock()
	o := s.findObject(kind, id)
	var items []entity
	if o != nil && (cast == "" || cast == "microsoft.graph.group") {
		var set map[string]bool
		if transitive {
			set = s.dir.transitiveGroups(o.id, now)
		} else {
			set = map[string]bool{}
			for g := range s.dir.directGroups(o.id, now) {
				set[g] = true
			}
		}
		for _, gid := range s.dir.groupsInOrder(set) {
			items = append(items, objectEntity(s.dir.objects[gid], cast == ""))
		}
	}
	s.dir.mu.Unlock()
	if o == nil {
		return s.resourceNotFound(req, id)
	}
	return s.collection(req, &ep, q, filterItems(items, q.filter))
}

func filterItems(items []entity, f filterExpr) []entity {
	out := []entity{}
	for _, it := range items {
		if f.match(it) {
			out = append(out, it)
		}
	}
	return out
}

// listObjects serves GET /users, /servicePrincipals and /groups: the
// objects of kind in creation order, rendered as the single-object GETs
// render them (users with their default properties unless $select says
// otherwise).
func (s *Server) listObjects(req *graphRequest, ep *endpoint, kind objKind) graphResponse {
	q, msg := s.parseQuery(req, ep)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, "Request_BadRequest", msg)
	}
	s.dir.mu.Lock()
	var items []entity
	for _, id := range s.dir.order {
		if o := s.dir.objects[id]; o.kind == kind {
			items = append(items, objectEntity(o, false))
		}
	}
	s.dir.mu.Unlock()
	return s.collection(req, ep, q, filterItems(items, q.filter))
}

func (s *Server) revokeSessions(req *graphRequest, id string) graphResponse {
	now := s.clock.Now()
	s.dir.mu.Lock()
	o := s.findObject(kindUser, id)
	if o != nil {
		o.sessionsValidFrom = now
	}
	s.dir.mu.Unlock()
	if o == nil {
		return s.resourceNotFound(req, id)
	}
	return s.ok(req, entity{{"@odata.context", s.metadata(req) + "Edm.Boolean"}, {"value", true}})
}

// ---- the caller (for /me and filterByCurrentUser) ----

// callerOID reads the oid claim of the bearer token, without verifying it.
func (s *Server) callerOID(req *graphRequest, delegatedOnly bool) (string, graphResponse, bool) {
	if req.bearer == "" {
		return "", s.graphError(req, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty."), false
	}
	parts := strings.Split(req.bearer, ".")
	var claims struct {
		OID   string `json:"oid"`
		IDTyp string `json:"idtyp"`
		Scp   string `json:"scp"`
	}
	if len(parts) != 3 {
		return "", s.graphError(req, http.StatusUnauthorized, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed."), false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &claims) != nil || claims.OID == "" {
		return "", s.graphError(req, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."), false
	}
	if delegatedOnly && (claims.IDTyp == "app" || claims.Scp == "") {
		return "", s.graphError(req, http.StatusBadRequest, "BadRequest", "/me request is only valid with delegated authentication flow."), false
	}
	return strings.ToLower(claims.OID), graphResponse{}, true
}

// checkOnPrincipal validates a filterByCurrentUser(on='principal') segment.
func (s *Server) checkOnPrincipal(req *graphRequest, seg string) (graphResponse, bool) {
	arg := strings.ToLower(strings.ReplaceAll(seg, " ", ""))
	if arg != "filterbycurrentuser(on='principal')" {
		return s.graphError(req, http.StatusBadRequest, "BadRequest",
			"The parameter 'on' of function filterByCurrentUser must be 'principal'."), false
	}
	return graphResponse{}, true
}

// ---- PIM: directory roles ----

var roleAssignmentInstanceEndpoint = endpoint{
	context:  "roleManagement/directory/roleAssignmentScheduleInstances",
	typeName: "microsoft.graph.unifiedRoleAssignmentScheduleInstance",
	props: []string{"id", "principalId", "roleDefinitionId", "directoryScopeId", "appScopeId", "startDateTime",
		"endDateTime", "assignmentType", "memberType", "roleAssignmentOriginId", "roleAssignmentScheduleId"},
	filterable: map[string]filterKind{"principalId": filterGUID, "roleDefinitionId": filterGUID},
}

var roleEligibilityInstanceEndpoint = endpoint{
	context:  "roleManagement/directory/roleEligibilityScheduleInstances",
	typeName: "microsoft.graph.unifiedRoleEligibilityScheduleInstance",
	props: []string{"id", "principalId", "roleDefinitionId", "directoryScopeId", "appScopeId", "startDateTime",
		"endDateTime", "memberType", "roleEligibilityScheduleId"},
	filterable: map[string]filterKind{"principalId": filterGUID, "roleDefinitionId": filterGUID},
}

// roleInstanceEntity renders a role assignment (eligible=false) or
// eligibility instance. Callers hold s.dir.mu.
func roleInstanceEntity(x *schedule, eligible, withType bool, memberType string) entity {
	var e entity
	start := jsonTime(x.start)
	if x.startNull {
		start = nil
	}
	if eligible {
		if withType {
			e = append(e, field{"@odata.type", "#microsoft.graph.unifiedRoleEligibilityScheduleInstance"})
		}
		return append(e,
			field{"id", x.id},
			field{"principalId", x.principalID},
			field{"roleDefinitionId", x.roleDefinitionID},
			field{"directoryScopeId", x.scope},
			field{"appScopeId", nil},
			field{"startDateTime", start},
			field{"endDateTime", jsonTime(x.end)},
			field{"memberType", memberType},
			field{"roleEligibilityScheduleId", x.scheduleID},
		)
	}
	if withType {
		e = append(e, field{"@odata.type", "#microsoft.graph.unifiedRoleAssignmentScheduleInstance"})
	}
	return append(e,
		field{"id", x.id},
		field{"principalId", x.principalID},
		field{"roleDefinitionId", x.roleDefinitionID},
		field{"directoryScopeId", x.scope},
		field{"appScopeId", nil},
		field{"startDateTime", start},
		field{"endDateTime", jsonTime(x.end)},
		field{"assignmentType", x.assignmentType},
		field{"memberType", memberType},
		field{"roleAssignmentOriginId", x.originID},
		field{"roleAssignmentScheduleId", x.scheduleID},
	)
}

func (s *Server) roleInstances(req *graphRequest, eligible, currentUser bool) graphResponse {
	ep := &roleAssignmentInstanceEndpoint
	if eligible {
		ep = &roleEligibilityInstanceEndpoint
	}
	if currentUser {
		cp := *ep
		cp.context = "Collection(" + strings.TrimPrefix(ep.typeName, "microsoft.graph.") + ")"
		ep = &cp
	}
	q, msg := s.parseQuery(req, ep)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", msg)
	}
	principals, restricted := q.filter.values("principalId")
	f := q.filter
	if currentUser {
		oid, resp, ok := s.callerOID(req, false)
		if !ok {
			return resp
		}
		principals, restricted = []string{oid}, true
		f = append(f, clause{prop: "principalId", values: principals})
	}
	s.mu.Lock()
	expand := s.expandGroupRole
	s.mu.Unlock()
	now := s.clock.Now()
	d := &s.dir
	d.mu.Lock()
	list := d.roleActive
	if eligible {
		list = d.roleEligible
	}
	var items []entity
	for _, x := range list {
		if x.activeAt(now) {
			items = append(items, roleInstanceEntity(x, eligible, currentUser, "Direct"))
		}
	}
	if expand && restricted {
		for _, p := range principals {
			direct := d.directGroups(p, now)
			for _, gid := range d.groupsInOrder(keys(direct)) {
				if !d.objects[gid].roleAssignable {
					continue
				}
				for _, x := range list {
					if x.principalID != gid || !x.activeAt(now) {
						continue
					}
					cp := *x
					cp.principalID = p
					cp.id = x.id + "-" + guidB64(p)
					if mEnd := direct[gid]; !mEnd.IsZero() && (cp.end.IsZero() || mEnd.Before(cp.end)) {
						cp.end = mEnd
					}
					items = append(items, roleInstanceEntity(&cp, eligible, currentUser, "Group"))
				}
			}
		}
	}
	d.mu.Unlock()
	return s.collection(req, ep, q, filterItems(items, f))
}

func keys(m map[string]time.Time) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

var roleAssignmentEndpoint = endpoint{
	context:    "roleManagement/directory/roleAssignments",
	typeName:   "microsoft.graph.unifiedRoleAssignment",
	props:      []string{"id", "principalId", "resourceScope", "directoryScopeId", "roleDefinitionId"},
	filterable: map[string]filterKind{"principalId": filterGUID, "roleDefinitionId": filterGUID},
}

func roleAssignmentEntity(x *schedule) entity {
	return entity{
		{"id", x.originID},
		{"principalId", x.principalID},
		{"resourceScope", x.scope},
		{"directoryScopeId", x.scope},
		{"roleDefinitionId", x.roleDefinitionID},
	}
}

func (s *Server) roleAssignments(req *graphRequest) graphResponse {
	q, msg := s.parseQuery(req, &roleAssignmentEndpoint)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", msg)
	}
	now := s.clock.Now()
	s.dir.mu.Lock()
	var items []entity
	for _, x := range s.dir.roleActive {
		if x.activeAt(now) {
			items = append(items, roleAssignmentEntity(x))
		}
	}
	s.dir.mu.Unlock()
	return s.collection(req, &roleAssignmentEndpoint, q, filterItems(items, q.filter))
}

var transitiveRoleAssignmentEndpoint = endpoint{
	context:    "roleManagement/directory/transitiveRoleAssignments",
	typeName:   "microsoft.graph.unifiedRoleAssignment",
	props:      []string{"id", "principalId", "directoryScopeId", "roleDefinitionId"},
	filterable: map[string]filterKind{"principalId": filterGUID, "roleDefinitionId": filterGUID},
}

// transitiveRoleAssignments serves the beta API: the assignments of a
// principal and of the groups it belongs to.
func (s *Server) transitiveRoleAssignments(req *graphRequest) graphResponse {
	ep := &transitiveRoleAssignmentEndpoint
	q, msg := s.parseQuery(req, ep)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", msg)
	}
	if !strings.EqualFold(req.header.Get("ConsistencyLevel"), "eventual") || !q.count {
		return s.graphError(req, http.StatusBadRequest, "Request_UnsupportedQuery",
			"transitiveRoleAssignments requires the ConsistencyLevel: eventual header and $count=true.")
	}
	principals, ok := q.filter.values("principalId")
	if !ok {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", "transitiveRoleAssignments requires a $filter on principalId.")
	}
	now := s.clock.Now()
	s.dir.mu.Lock()
	holders := map[string]bool{}
	for _, p := range principals {
		holders[p] = true
		for g := range s.dir.transitiveGroups(p, now) {
			holders[g] = true
		}
	}
	var items []entity
	for _, x := range s.dir.roleActive {
		if x.activeAt(now) && holders[x.principalID] {
			e := roleAssignmentEntity(x)
			items = append(items, entity{e[0], e[1], e[3], e[4]})
		}
	}
	s.dir.mu.Unlock()
	return s.collection(req, ep, q, filterItems(items, q.filter.without("principalId")))
}

// ---- PIM for Groups ----

var groupAssignmentInstanceEndpoint = endpoint{
	context:  "identityGovernance/privilegedAccess/group/assignmentScheduleInstances",
	typeName: "microsoft.graph.privilegedAccessGroupAssignmentScheduleInstance",
	props: []string{"id", "principalId", "startDateTime", "endDateTime", "assignmentType", "accessId", "groupId",
		"memberType", "assignmentScheduleId"},
	filterable: map[string]filterKind{"principalId": filterGUID, "groupId": filterGUID},
}

var groupEligibilityInstanceEndpoint = endpoint{
	context:  "identityGovernance/privilegedAccess/group/eligibilityScheduleInstances",
	typeName: "microsoft.graph.privilegedAccessGroupEligibilityScheduleInstance",
	props: []string{"id", "principalId", "startDateTime", "endDateTime", "accessId", "groupId",
		"memberType", "eligibilityScheduleId"},
	filterable: map[string]filterKind{"principalId": filterGUID, "groupId": filterGUID},
}

func groupInstanceEntity(x *schedule, eligible, withType bool) entity {
	var e entity
	start := jsonTime(x.start)
	if x.startNull {
		start = nil
	}
	if eligible {
		if withType {
			e = append(e, field{"@odata.type", "#microsoft.graph.privilegedAccessGroupEligibilityScheduleInstance"})
		}
		return append(e,
			field{"id", x.id},
			field{"principalId", x.principalID},
			field{"startDateTime", start},
			field{"endDateTime", jsonTime(x.end)},
			field{"accessId", x.accessID},
			field{"groupId", x.groupID},
			field{"memberType", "Direct"},
			field{"eligibilityScheduleId", x.scheduleID},
		)
	}
	if withType {
		e = append(e, field{"@odata.type", "#microsoft.graph.privilegedAccessGroupAssignmentScheduleInstance"})
	}
	return append(e,
		field{"id", x.id},
		field{"principalId", x.principalID},
		field{"startDateTime", start},
		field{"endDateTime", jsonTime(x.end)},
		field{"assignmentType", x.assignmentType},
		field{"accessId", x.accessID},
		field{"groupId", x.groupID},
		field{"memberType", "Direct"},
		field{"assignmentScheduleId", x.scheduleID},
	)
}

func (s *Server) groupInstances(req *graphRequest, eligible, currentUser bool) graphResponse {
	ep := &groupAssignmentInstanceEndpoint
	if eligible {
		ep = &groupEligibilityInstanceEndpoint
	}
	if currentUser {
		cp := *ep
		cp.context = strings.TrimSuffix(ep.context, "s") // as documented: ...assignmentScheduleInstance
		ep = &cp
	}
	q, msg := s.parseQuery(req, ep)
	if msg != "" {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", msg)
	}
	f := q.filter
	if currentUser {
		oid, resp, ok := s.callerOID(req, false)
		if !ok {
			return resp
		}
		f = append(f, clause{prop: "principalId", values: []string{oid}})
	} else {
		_, byGroup := f.values("groupId")
		_, byPrincipal := f.values("principalId")
		if !byGroup && !byPrincipal {
			return s.graphError(req, http.StatusBadRequest, "BadRequest",
				"The request must filter on groupId or principalId, e.g. $filter=groupId eq '{id}'.")
		}
	}
	now := s.clock.Now()
	s.dir.mu.Lock()
	list := s.dir.groupActive
	if eligible {
		list = s.dir.groupEligible
	}
	var items []entity
	for _, x := range list {
		if x.activeAt(now) {
			items = append(items, groupInstanceEntity(x, eligible, currentUser))
		}
	}
	s.dir.mu.Unlock()
	return s.collection(req, ep, q, filterItems(items, f))
}
