package middleware

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pimguard/pimguard/graphcheck"
)

// stateCodec encodes the Guard's cached answers for a shared tier
// (GuardConfig.Shared): a state, or the definite answer that the principal
// does not exist. The tier authenticates what it stores; Decode still
// refuses anything that is not exactly one of the two.
type stateCodec struct{}

// sharedAnswer is the JSON of a lookupResult. NotFound is "deleted" (the
// directory said so) or "invalid" (the IDs are not GUIDs); Err is the
// error's text, for logs.
type sharedAnswer struct {
	State    *graphcheck.State `json:"state,omitempty"`
	NotFound string            `json:"notFound,omitempty"`
	Err      string            `json:"err,omitempty"`
}

func (stateCodec) Encode(v *lookupResult) ([]byte, error) {
	switch {
	case v == nil || (v.state == nil) == (v.notFound == nil):
		return nil, errors.New("middleware: a lookup result holds exactly one of a state and a not-found answer")
	case v.state != nil:
		return json.Marshal(sharedAnswer{State: v.state})
	case errors.Is(v.notFound, graphcheck.ErrPrincipalNotFound):
		return json.Marshal(sharedAnswer{NotFound: "deleted", Err: v.notFound.Error()})
	case errors.Is(v.notFound, graphcheck.ErrInvalidPrincipal):
		return json.Marshal(sharedAnswer{NotFound: "invalid", Err: v.notFound.Error()})
	}
	return nil, fmt.Errorf("middleware: cannot share a not-found answer of class %T", v.notFound)
}

func (stateCodec) Decode(b []byte) (*lookupResult, error) {
	var a sharedAnswer
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(&a); err != nil {
		return nil, fmt.Errorf("middleware: shared state: %w", err)
	}
	switch {
	case a.State != nil && a.NotFound == "":
		return &lookupResult{state: a.State}, nil
	case a.State == nil && a.NotFound == "deleted":
		return &lookupResult{notFound: sharedError{a.Err, graphcheck.ErrPrincipalNotFound}}, nil
	case a.State == nil && a.NotFound == "invalid":
		return &lookupResult{notFound: sharedError{a.Err, graphcheck.ErrInvalidPrincipal}}, nil
	}
	return nil, errors.New("middleware: shared state holds neither a state nor a not-found answer")
}

// sharedError is a not-found answer read from the shared tier: the text the
// replica that looked up wrote, and the class it had.
type sharedError struct {
	text  string
	class error
}

func (e sharedError) Error() string {
	if e.text == "" {
		return e.class.Error()
	}
	return e.text
}

func (e sharedError) Unwrap() error { return e.class }

// sharedInvalidated purges the Source's own per-principal caches
// (graphcheck/msgraph's risk) on this replica when any replica purged a
// principal: the shared tier has dropped the state cache's copies already.
// keys are state cache keys, tenant/object/kind/need; nil means all.
func (g *Guard) sharedInvalidated(keys []string) {
	p, ok := g.cfg.Source.(graphcheck.Purger)
	if !ok {
		return
	}
	if keys == nil {
		p.PurgeAll()
		return
	}
	for _, k := range keys {
		if tenant, rest, ok := strings.Cut(k, "/"); ok {
			if object, _, ok := strings.Cut(rest, "/"); ok {
				p.Purge(tenant, object)
			}
		}
	}
}
