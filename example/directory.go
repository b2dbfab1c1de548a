package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// directory is the example's record of the helpdesk actions (the audit
// log) and, in demo mode, the in-memory users they act on. In real mode it
// holds no users: the targets are looked up in Graph and nothing in the
// tenant changes.
type directory struct {
	mu     sync.Mutex
	tenant string                   // the tenant the users belong to
	users  map[string]directoryUser // id → user; nil in real mode
	audit  []auditEntry
	now    func() time.Time
}

// directoryUser is a user of the in-memory directory.
type directoryUser struct {
	name string
	// units are the IDs (GUIDs) of the administrative units the user is
	// a member of.
	units []string
}

type auditEntry struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	// Performed is false for what real mode would have done: it changes
	// nothing in the tenant.
	Performed bool `json:"performed"`
}

var _ graphcheck.UserDirectory = (*directory)(nil)

// newDirectory returns a directory of tenant's users, copied from users;
// nil users makes one without users, for real mode.
func newDirectory(now func() time.Time, tenant string, users map[string]directoryUser) *directory {
	d := &directory{tenant: strings.ToLower(tenant), now: now}
	if users != nil {
		d.users = map[string]directoryUser{}
		for id, u := range users {
			d.users[id] = directoryUser{name: u.name, units: slices.Clone(u.units)}
		}
	}
	return d
}

// ownsUsers reports whether the directory holds users the actions act on
// (demo mode), rather than none (real mode).
func (d *directory) ownsUsers() bool { return d.users != nil }

// User implements graphcheck.UserDirectory over the in-memory users, with
// the administrative units they were seeded with. The demo's user IDs are
// short names ("alex"), not GUIDs, so unlike Graph's directory it takes
// any ID: one it does not hold (GUID or not, of another tenant, or
// deleted) wraps graphcheck.ErrPrincipalNotFound. It is safe for
// concurrent use.
func (d *directory) User(_ context.Context, tenantID, userID string) (*graphcheck.DirectoryUser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.users[userID]
	if !ok || !strings.EqualFold(tenantID, d.tenant) {
		return nil, fmt.Errorf("%w: no user %.40q in the example's directory of tenant %.40q", graphcheck.ErrPrincipalNotFound, userID, tenantID)
	}
	return &graphcheck.DirectoryUser{
		TenantID: d.tenant, ID: userID, DisplayName: u.name, AdministrativeUnits: slices.Clone(u.units),
	}, nil
}

// resetPassword sets a temporary password; ok is false for an unknown user.
func (d *directory) resetPassword(actor, id string) (temp string, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.users[id]; !ok {
		return "", false
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	d.record(auditEntry{Actor: actor, Action: "reset-password", Target: id, Performed: true})
	return base64.RawURLEncoding.EncodeToString(b[:]), true
}

// deleteUser removes a user; ok is false for an unknown user.
func (d *directory) deleteUser(actor, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.users[id]; !ok {
		return false
	}
	delete(d.users, id)
	d.record(auditEntry{Actor: actor, Action: "delete-user", Target: id, Performed: true})
	return true
}

// recordNotPerformed logs an action that real mode answers without
// performing it.
func (d *directory) recordNotPerformed(actor, action, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.record(auditEntry{Actor: actor, Action: action, Target: id})
}

// maxAudit bounds the audit log: a long-running real-mode service keeps
// the latest entries.
const maxAudit = 1000

// record appends e, stamped now, dropping the oldest entry beyond
// maxAudit. Callers hold d.mu.
func (d *directory) record(e auditEntry) {
	e.At = d.now().UTC()
	if len(d.audit) >= maxAudit {
		d.audit = slices.Delete(d.audit, 0, len(d.audit)-maxAudit+1)
	}
	d.audit = append(d.audit, e)
}

func (d *directory) auditLog() []auditEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]auditEntry{}, d.audit...)
}
