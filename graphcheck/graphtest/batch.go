package graphtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// MaxBatchRequests is the number of requests one JSON $batch may hold, as
// in Microsoft Graph; a larger batch is refused with 400.
const MaxBatchRequests = 20

type batchItem struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
	DependsOn []string          `json:"dependsOn"`
}

type batchAnswer struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body,omitempty"`
}

// handleBatch serves POST /$batch, after [Server.handleGraph] has applied
// faults and the bearer check to it: JSON batching of up to 20 requests,
// executed in order through handleGraph (sub-requests inherit the outer
// Authorization header and are recorded and fault-matched one by one).
func (s *Server) handleBatch(req *graphRequest) graphResponse {
	switch {
	case req.batchID != "":
		return s.graphError(req, http.StatusBadRequest, "BadRequest", "A $batch request cannot contain a nested $batch request.")
	case req.method != http.MethodPost:
		return s.methodNotAllowed(req)
	}
	var payload struct {
		Requests []batchItem `json:"requests"`
	}
	if err := json.Unmarshal(req.body, &payload); err != nil {
		return s.graphError(req, http.StatusBadRequest, "BadRequest", "Invalid batch payload format.")
	}
	switch n := len(payload.Requests); {
	case n == 0:
		return s.graphError(req, http.StatusBadRequest, "BadRequest", "Invalid batch payload format: no requests.")
	case n > MaxBatchRequests:
		return s.graphError(req, http.StatusBadRequest, "BadRequest",
			fmt.Sprintf("Number of batch requests exceeds the limit of %d.", MaxBatchRequests))
	}
	ids := map[string]bool{}
	for _, it := range payload.Requests {
		switch {
		case it.ID == "":
			return s.graphError(req, http.StatusBadRequest, "BadRequest", "Invalid batch payload format: a request has no id.")
		case ids[it.ID]:
			return s.graphError(req, http.StatusBadRequest, "BadRequest", "Invalid batch payload format: request id '"+it.ID+"' is repeated.")
		case it.Method == "" || it.URL == "":
			return s.graphError(req, http.StatusBadRequest, "BadRequest", "Invalid batch payload format: request '"+it.ID+"' has no method or url.")
		case hasBody(it.Body) && headerOf(it.Headers, "Content-Type") == "":
			// "When a body is included with the request, the headers
			// object must contain a value for Content-Type." (JSON
			// batching): the outer request's does not count.
			return s.graphError(req, http.StatusBadRequest, "BadRequest",
				"Invalid batch payload format: request '"+it.ID+"' has a body but no Content-Type header.")
		}
		for _, dep := range it.DependsOn {
			if !ids[dep] {
				return s.graphError(req, http.StatusBadRequest, "BadRequest",
					"Invalid batch payload format: request '"+it.ID+"' depends on '"+dep+"', which does not precede it.")
			}
		}
		ids[it.ID] = true
	}
	status := map[string]int{}
	answers := make([]batchAnswer, 0, len(payload.Requests))
	for _, it := range payload.Requests {
		sub := s.subRequest(req, it)
		failed := ""
		for _, dep := range it.DependsOn {
			if status[dep] >= 400 {
				failed = dep
			}
		}
		var resp graphResponse
		switch {
		case failed != "":
			resp = s.graphError(sub, http.StatusFailedDependency, "FailedDependency",
				"The request depends on request '"+failed+"', which failed.")
		case sub.path == "":
			resp = s.graphError(sub, http.StatusBadRequest, "BadRequest", "Invalid request URL '"+it.URL+"': batch URLs must be relative, e.g. /users/{id}.")
		default:
			resp = s.handleGraph(sub)
		}
		if resp.action != actAnswer {
			return resp // a dropped or hung sub-request takes the whole batch with it
		}
		status[it.ID] = resp.status
		answers = append(answers, batchAnswer{ID: it.ID, Status: resp.status, Headers: flatHeader(resp.header), Body: embedBody(resp.body)})
	}
	return graphResponse{status: http.StatusOK, header: s.baseHeader(req, true), body: s.encode(map[string]any{"responses": answers})}
}

// subRequest builds and records one sub-request of a batch.
func (s *Server) subRequest(outer *graphRequest, it batchItem) *graphRequest {
	sub := &graphRequest{
		ctx: outer.ctx, method: strings.ToUpper(it.Method),
		header: outer.header.Clone(), bearer: outer.bearer, batchID: it.ID,
	}
	for k, v := range it.Headers {
		sub.header.Set(k, v)
	}
	if hasBody(it.Body) {
		sub.body = it.Body
	}
	rawPath, rawQuery, _ := strings.Cut(it.URL, "?")
	sub.rawQuery = rawQuery
	if p, err := url.PathUnescape(rawPath); err == nil && !strings.Contains(rawPath, "://") {
		sub.path = "/" + strings.TrimPrefix(p, "/")
	}
	s.mu.Lock()
	s.requests = append(s.requests, Request{
		Method:      sub.method,
		Path:        graphVersion + sub.path,
		Query:       rawQuery,
		At:          s.clock.Now(),
		BearerToken: sub.bearer,
		BatchID:     it.ID,
	})
	s.mu.Unlock()
	return sub
}

// hasBody reports whether a sub-request carries a body: a JSON value other
// than null (the Go SDK sends "body":null with every GET).
func hasBody(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && !bytes.Equal(b, []byte("null"))
}

// headerOf looks a header up case-insensitively in a sub-request's
// headers object.
func headerOf(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func flatHeader(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

// embedBody returns body as JSON for a batch answer: verbatim when it is
// valid JSON, else as a JSON string.
func embedBody(body []byte) json.RawMessage {
	if len(body) == 0 {
		return nil
	}
	if json.Valid(body) {
		return body
	}
	b, _ := marshalNoEscape(string(body))
	return b
}
