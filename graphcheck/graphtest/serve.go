package graphtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Serving the Graph half: reading a request (standalone or a $batch
// sub-request), applying injected faults and the bearer check, and writing
// Graph's answers and error envelopes.

// maxBodyBytes bounds the request bodies the Graph emulator reads.
const maxBodyBytes = 4 << 20

// SetRequireGraphAuth changes [Options.RequireGraphAuth] for later requests.
func (s *Server) SetRequireGraphAuth(require bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requireAuth = require
}

// graphVersion is the one Graph version the emulator serves, the path
// [Server.GraphURL] ends in.
const graphVersion = "/v1.0"

// graphPath returns the part of a /v1.0/... path below the version (which
// starts with "/"), and whether p is such a path.
func graphPath(p string) (rest string, ok bool) {
	if p == graphVersion {
		return "/", true
	}
	if r, found := strings.CutPrefix(p, graphVersion+"/"); found {
		return "/" + r, true
	}
	return "", false
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
	rest, _ := graphPath(r.URL.Path)
	req := &graphRequest{
		ctx: r.Context(), method: r.Method, path: rest,
		rawQuery: r.URL.RawQuery, header: r.Header, bearer: bearerToken(r.Header),
	}
	body, status, msg := readBody(r)
	req.body = body
	var resp graphResponse
	if msg != "" {
		resp = s.graphError(req, status, "BadRequest", msg)
	} else {
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

// handleGraph answers one Graph request, standalone or a $batch
// sub-request: faults first, then authentication, then the $batch or the
// route.
func (s *Server) handleGraph(req *graphRequest) graphResponse {
	if resp, done := s.applyFault(req); done {
		return resp
	}
	if resp, ok := s.checkAuth(req); !ok {
		return resp
	}
	if strings.EqualFold(req.path, "/$batch") {
		return s.handleBatch(req)
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

func (s *Server) methodNotAllowed(req *graphRequest) graphResponse {
	return s.graphError(req, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
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
