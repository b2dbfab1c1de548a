package msgraph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	msgraphgocore "github.com/microsoftgraph/msgraph-sdk-go-core"

	"github.com/pimguard/pimguard/graphcheck"
)

const (
	// maxBatchItems is Graph's limit of requests in one JSON $batch.
	maxBatchItems = 20
	// maxResponseBytes bounds the body of one $batch answer.
	maxResponseBytes = 64 << 20
	// minAttempt is the least time a retry must have left before the
	// deadline once its wait is over.
	minAttempt = 50 * time.Millisecond
	// maxRetryAfter caps absurd Retry-After values before they are compared
	// with the deadline.
	maxRetryAfter = 24 * time.Hour
)

// collection is one Graph collection being read page by page. Pages of all
// collections that are still open travel together in $batch requests.
type collection struct {
	ep *endpoint
	// next is the relative URL (below the base URL, with its query) of the
	// next page to fetch; "" once the collection is complete.
	next string
	// seen holds the URLs already fetched, to detect nextLink loops.
	seen  map[string]bool
	pages int
	// add consumes the "value" array of one page or, for a single
	// object, the whole body.
	add func(value json.RawMessage) error
	// single marks a GET of one object (/users/{id}): add receives the
	// body, and there is no next page.
	single bool
	// absent, when set, takes a 404 answer carrying Graph's not-found
	// error (notFoundError) as the definite "no such object" (a user
	// Identity Protection never flagged) instead of a failure. Any other
	// 404 fails the fetch.
	absent func()
	// onePage stops after the first page (a preflight probe).
	onePage bool
	// post, when set, makes the request a POST of this JSON body (an
	// action such as checkMemberGroups; single must be set too) instead
	// of a GET. Retries send the same body again: only read-only actions
	// are sent this way.
	post []byte
}

// subAnswer is one $batch sub-response.
type subAnswer struct {
	status int
	header map[string]string
	body   json.RawMessage
}

// throttle is a failure that may be retried after a wait.
type throttle struct {
	err   error         // the classified error, returned if retries run out
	delay time.Duration // what Retry-After asked for, if has
	has   bool
	// pause marks a 429 with a positive Retry-After: Graph throttles the
	// application in the tenant, so the tenant's other requests wait too
	// (see Source.pause).
	pause bool
}

// newThrottle is the throttle of a retryable answer with the given status
// and Retry-After header value.
func newThrottle(err error, status int, header string) throttle {
	d, ok := retryAfter(header)
	return throttle{err: err, delay: d, has: ok, pause: status == http.StatusTooManyRequests && ok && d > 0}
}

// fetch reads every collection to its end, sending the open collections'
// next pages in $batch requests of at most 20 sub-requests, so that n
// collections of one page each cost one HTTP round trip per 20. Throttled
// (429) and unavailable (503, 504) answers, of the whole batch or of single
// sub-requests, are retried up to MaxRetries times in total, after the
// longest Retry-After they asked for (or an exponential backoff), provided
// the wait fits before ctx's deadline. Any other failure ends the fetch
// with a classified error.
//
// tenant is the lower-case tenant ID the requests read, "" when unknown
// (Preflight). Each $batch for a tenant first waits out the tenant's pause
// beyond what the Lookup has already waited (see Source.awaitPause and
// pace), and a 429 with a Retry-After sets one (see Source.pause); the
// batches of the same pass that are still unsent then wait with the
// retries.
func (s *Source) fetch(ctx context.Context, tenant string, cols []*collection) error {
	retries := 0
	pc := paceOf(ctx)
	for {
		var open []*collection
		for _, c := range cols {
			if c.next != "" {
				open = append(open, c)
			}
		}
		if len(open) == 0 {
			return nil
		}
		var throttled []throttle
		for len(open) > 0 {
			if err := s.awaitPause(ctx, tenant, pc); err != nil {
				return err
			}
			chunk := open[:min(len(open), maxBatchItems)]
			open = open[len(chunk):]
			t, err := s.round(ctx, chunk)
			if err != nil {
				return err
			}
			throttled = append(throttled, t...)
			if s.notePause(ctx, tenant, t) {
				break // the tenant is paused: the rest waits with the retries
			}
		}
		if len(throttled) == 0 {
			continue
		}
		retries++
		start := s.cfg.Now()
		d, err := s.wait(ctx, throttled, retries)
		if err != nil {
			return err
		}
		pc.waited(start, d)
	}
}

// round sends one $batch with the next page of each collection in chunk and
// consumes the answers. Collections whose sub-request was throttled keep
// their next URL and are reported for a retry.
func (s *Source) round(ctx context.Context, chunk []*collection) ([]throttle, error) {
	for _, c := range chunk {
		if c.seen == nil {
			c.seen = map[string]bool{}
		}
		if c.seen[c.next] {
			return nil, unavailable("%s: @odata.nextLink loops back to a page already read", c.ep.request())
		}
		if c.pages >= s.cfg.MaxPages {
			return nil, unavailable("%s: more than %d pages", c.ep.request(), s.cfg.MaxPages)
		}
	}
	answers, outer := s.sendBatch(ctx, chunk)
	if outer != nil {
		return outer, nil // the whole batch is to be retried
	}
	var throttled []throttle
	for i, c := range chunk {
		a := answers[i]
		switch {
		case a.err != nil:
			return nil, a.err
		case a.status >= 200 && a.status < 300 && c.single:
			c.seen[c.next] = true
			c.pages++
			c.next = ""
			if err := c.add(a.body); err != nil {
				return nil, unreadable(c, err)
			}
		case a.status == http.StatusNotFound && c.absent != nil && notFoundError(a.body):
			c.next = ""
			c.absent()
		case a.status >= 200 && a.status < 300:
			c.seen[c.next] = true
			c.pages++
			value, link, err := decodePage(a.body)
			if err == nil {
				err = c.add(value)
			}
			if err != nil {
				return nil, unreadable(c, err)
			}
			if link == "" || c.onePage {
				c.next = ""
				continue
			}
			if c.next, err = s.relativeLink(link); err != nil {
				return nil, unavailable("%s: %v", c.ep.request(), err)
			}
		case retryable(a.status):
			s.tel.throttledAnswer(ctx, a.status, c.ep.path)
			code, msg := errorCode(a.body)
			throttled = append(throttled, newThrottle(classifyStatus(c.ep, a.status, code, msg), a.status, headerValue(a.header, "Retry-After")))
		default:
			code, msg := errorCode(a.body)
			return nil, classifyStatus(c.ep, a.status, code, msg)
		}
	}
	return throttled, nil
}

// unreadable classifies an answer that did not decode: unavailable, unless
// the decoder found a refusal in it (a *graphcheck.PermissionError, such as
// a riskLevel of "hidden"), which is passed on as it is.
func unreadable(c *collection, err error) error {
	var pe *graphcheck.PermissionError
	if errors.As(err, &pe) {
		return err
	}
	return unavailable("%s: unreadable answer: %v", c.ep.request(), err)
}

// answer is the outcome of one sub-request as sendBatch reports it.
type answer struct {
	subAnswer
	err error // set when the whole batch failed for good
}

// sendBatch POSTs one JSON $batch through the SDK's request adapter (its
// authentication provider and middleware) and returns the sub-responses in
// the order of chunk. A failure of the batch as a whole that may be retried
// comes back as throttles; any other failure as the err of every answer.
func (s *Source) sendBatch(ctx context.Context, chunk []*collection) (answers []answer, retry []throttle) {
	ep := batchEndpoint(chunk)
	fail := func(err error) ([]answer, []throttle) {
		out := make([]answer, len(chunk))
		for i := range out {
			out[i].err = err
		}
		return out, nil
	}

	batch := msgraphgocore.NewBatchRequest(s.adapter)
	index := make(map[string]int, len(chunk))
	for i, c := range chunk {
		u, err := url.Parse(s.cfg.baseStr + c.next)
		if err != nil {
			return fail(unavailable("%s: bad URL: %v", c.ep.request(), err))
		}
		ri := abstractions.NewRequestInformation()
		ri.Method = abstractions.GET
		if c.post != nil {
			// The $batch item carries the body and, as JSON batching
			// requires of a request with a body, its Content-Type.
			ri.Method = abstractions.POST
			ri.SetStreamContentAndContentType(c.post, "application/json")
		}
		ri.SetUri(*u)
		item, err := batch.AddBatchRequestStep(*ri) // sets a UUID item id
		if err != nil {
			return fail(unavailable("building $batch: %v", err))
		}
		rel := c.next // exactly as validated, "$" unencoded
		item.SetUrl(&rel)
		index[*item.GetId()] = i
	}
	ri := abstractions.NewRequestInformation()
	ri.Method = abstractions.POST
	ri.UrlTemplate = "{+baseurl}/$batch"
	if err := ri.SetContentFromParsable(ctx, s.adapter, "application/json", batch); err != nil {
		return fail(unavailable("building $batch: %v", err))
	}
	// A response handler hands back the raw answer: no error mapping, so no
	// ODataError (whose Error() panics without an "error" object) and no
	// lost status when an error body does not parse.
	var raw struct {
		status int
		header http.Header
		body   []byte
	}
	handler := abstractions.NewRequestHandlerOption()
	handler.SetResponseHandler(func(resp any, _ abstractions.ErrorMappings) (any, error) {
		r, ok := resp.(*http.Response)
		if !ok || r == nil {
			return nil, errors.New("no HTTP response")
		}
		defer r.Body.Close()
		body, err := io.ReadAll(io.LimitReader(r.Body, maxResponseBytes+1))
		if err != nil {
			return nil, err
		}
		if len(body) > maxResponseBytes {
			return nil, fmt.Errorf("answer larger than %d bytes", maxResponseBytes)
		}
		raw.status, raw.header, raw.body = r.StatusCode, r.Header, body
		return nil, nil
	})
	ri.AddRequestOptions([]abstractions.RequestOption{handler})
	start := time.Now()
	defer func() { s.tel.roundTrip(ctx, start, raw.status, batchErr(answers, retry)) }()
	if _, err := s.adapter.SendPrimitive(ctx, ri, "[]byte", nil); err != nil {
		return fail(classifyErr(ep, err))
	}

	if raw.status < 200 || raw.status >= 300 {
		code, msg := errorCode(raw.body)
		err := classifyStatus(ep, raw.status, code, msg)
		if retryable(raw.status) {
			return nil, []throttle{newThrottle(err, raw.status, raw.header.Get("Retry-After"))}
		}
		return fail(err)
	}
	byID, err := decodeBatch(raw.body)
	if err != nil {
		return fail(unavailable("POST /$batch: unreadable answer: %v", err))
	}
	out := make([]answer, len(chunk))
	for id, a := range byID {
		i, ok := index[id]
		if !ok {
			return fail(unavailable("POST /$batch: answer for unknown request id %.40q", id))
		}
		out[i].subAnswer = a
	}
	for i, c := range chunk {
		if out[i].status == 0 {
			return fail(unavailable("POST /$batch: no answer for %s", c.ep.request()))
		}
	}
	return out, nil
}

// decodeBatch reads a JSON $batch answer into its sub-responses by id.
// Header values that are not strings or numbers are dropped.
func decodeBatch(body []byte) (map[string]subAnswer, error) {
	var env struct {
		Responses []struct {
			ID      string          `json:"id"`
			Status  int             `json:"status"`
			Headers map[string]any  `json:"headers"`
			Body    json.RawMessage `json:"body"`
		} `json:"responses"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	if env.Responses == nil {
		return nil, fmt.Errorf("%w: no \"responses\" array", errShape)
	}
	out := make(map[string]subAnswer, len(env.Responses))
	for _, r := range env.Responses {
		if _, dup := out[r.ID]; dup || r.Status < 100 || r.Status > 599 {
			return nil, fmt.Errorf("%w: sub-response %.40q is repeated or has status %d", errShape, r.ID, r.Status)
		}
		hdr := make(map[string]string, len(r.Headers))
		for k, v := range r.Headers {
			switch v := v.(type) {
			case string:
				hdr[k] = v
			case float64:
				hdr[k] = strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
		out[r.ID] = subAnswer{status: r.Status, header: hdr, body: r.Body}
	}
	return out, nil
}

// wait sleeps before retry number n of the throttled requests and returns
// how long it waited, or returns the error to give up with.
func (s *Source) wait(ctx context.Context, throttled []throttle, n int) (time.Duration, error) {
	last := throttled[0].err
	switch {
	case s.cfg.MaxRetries == 0:
		return 0, fmt.Errorf("%w (retries disabled)", last)
	case n > s.cfg.MaxRetries:
		return 0, fmt.Errorf("%w (gave up after %d retries)", last, s.cfg.MaxRetries)
	}
	var d time.Duration
	asked := false
	for _, t := range throttled {
		if t.has {
			asked = true
			d = max(d, t.delay)
		}
	}
	if !asked {
		d = s.cfg.RetryDelay << (n - 1)
	}
	if !fits(ctx, d) {
		return 0, fmt.Errorf("%w (a retry after %v does not fit before the deadline)", last, d)
	}
	s.cfg.Logger.WarnContext(ctx, "msgraph: Graph throttled or unavailable; retrying",
		"error", last.Error(), "retry", n, "delay", d, "requests", len(throttled))
	if err := s.cfg.Sleep(ctx, d); err != nil {
		return 0, fmt.Errorf("%w (interrupted while waiting to retry: %w)", last, err)
	}
	return d, nil
}

// fits reports whether a wait of d still leaves minAttempt before ctx's
// deadline.
func fits(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) >= d+minAttempt
}

// retryAfter parses a Retry-After value: seconds, possibly fractional as in
// Graph's throttling sample ("2.128"), or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || f < 0 {
			return 0, false
		}
		if f > maxRetryAfter.Seconds() {
			return maxRetryAfter, true
		}
		return time.Duration(f * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter), true
	}
	return 0, false
}

// headerValue looks a header up case-insensitively in a $batch
// sub-response's header map.
func headerValue(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// relativeLink turns an @odata.nextLink into a URL relative to the base
// URL, refusing links to another scheme, host, port or API version: the
// next page is fetched inside a $batch to the configured host, so a link
// elsewhere is never followed (and never gets a token).
func (s *Source) relativeLink(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() {
		return "", fmt.Errorf("@odata.nextLink %.80q is not an absolute URL", link)
	}
	base := s.cfg.base
	if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) || u.User != nil {
		return "", fmt.Errorf("@odata.nextLink leaves %s (points to %.80q); not followed", base.Host, u.Scheme+"://"+u.Host)
	}
	rel, ok := strings.CutPrefix(u.EscapedPath(), base.EscapedPath())
	if !ok || !strings.HasPrefix(rel, "/") || hasDotSegment(u.Path) {
		return "", fmt.Errorf("@odata.nextLink %.80q is outside %s; not followed", link, s.cfg.baseStr)
	}
	if u.RawQuery != "" {
		rel += "?" + u.RawQuery
	}
	return rel, nil
}

// hasDotSegment reports whether a (decoded) URL path has a "." or ".."
// segment: {base}/v1.0/../beta/... has the base's prefix but leaves it once
// resolved, so such a link is refused rather than followed.
func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// relative turns a request built by the SDK's request builders into a URL
// relative to the base URL, for a $batch sub-request. Kiota's
// ParametersNameDecodingHandler turns "%24select" back into "$select" on
// requests it sends itself; sub-request URLs travel inside the batch body,
// past that handler, so the same decoding is applied here.
func (s *Source) relative(ri *abstractions.RequestInformation, err error) (string, error) {
	if err != nil {
		return "", err
	}
	ri.PathParameters["baseurl"] = s.cfg.baseStr
	u, err := ri.GetUri()
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(u.String(), s.cfg.baseStr)
	if !ok || !strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("request URL %q is not below %s", u.String(), s.cfg.baseStr)
	}
	if path, query, found := strings.Cut(rel, "?"); found {
		rel = path + "?" + strings.ReplaceAll(query, "%24", "$")
	}
	return rel, nil
}
