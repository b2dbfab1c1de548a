package main

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// directory is the example's in-memory user store: the helpdesk actions act
// on it and nothing in a real tenant changes.
type directory struct {
	mu    sync.Mutex
	users map[string]string // id → display name
	audit []auditEntry
	now   func() time.Time
}

type auditEntry struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
}

func newDirectory(now func() time.Time, users map[string]string) *directory {
	d := &directory{users: map[string]string{}, now: now}
	for id, name := range users {
		d.users[id] = name
	}
	return d
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
	d.audit = append(d.audit, auditEntry{At: d.now().UTC(), Actor: actor, Action: "reset-password", Target: id})
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
	d.audit = append(d.audit, auditEntry{At: d.now().UTC(), Actor: actor, Action: "delete-user", Target: id})
	return true
}

func (d *directory) auditLog() []auditEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]auditEntry{}, d.audit...)
}
