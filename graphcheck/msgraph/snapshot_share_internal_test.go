package msgraph

import (
	"reflect"
	"testing"
	"time"

	"github.com/pimguard/pimguard/graphcheck"
)

// A snapshot survives the trip through the store's encoding unchanged, and
// the decoder refuses another tenant's snapshot and any string index it
// does not hold.
func TestSnapshotWire(t *testing.T) {
	mk := func() *snapshot {
		in := &interner{index: map[string]uint32{}}
		end := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		snap := &snapshot{tenant: "t1", fetchedAt: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC),
			own: map[string][]packedRole{"u1": {in.role(graphcheck.RoleAssignment{RoleDefinitionID: "r1", DirectoryScopeID: "/",
				AssignmentType: graphcheck.AssignmentActivated, Window: graphcheck.Window{End: end}})}},
			groupRoles: map[string][]packedRole{"g1": {in.role(graphcheck.RoleAssignment{RoleDefinitionID: "r2", DirectoryScopeID: "/"})}},
			memberships: map[string][]packedMembership{"u1": {{packedWindow: pack(graphcheck.Window{End: end}),
				group: in.idx("g2"), access: in.idx("member"), typ: in.idx(graphcheck.AssignmentActivated)}}},
			groupsOf: map[string][]string{"u1": {"g1"}}, read: map[string]bool{"g1": true, "g2": true},
			roleInstances: 2, groupInstances: 1}
		snap.strs = in.strs
		return snap
	}
	decode := func(snap *snapshot, tenant string) (*snapshot, error) {
		t.Helper()
		data, err := encodeSnapshot(snap)
		if err != nil {
			t.Fatal(err)
		}
		return decodeSnapshot(data, tenant)
	}

	want := mk()
	got, err := decode(want, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v,\nwant %+v", got, want)
	}
	if _, err := decode(want, "t2"); err == nil {
		t.Error("another tenant's snapshot decoded")
	}
	for name, edit := range map[string]func(*snapshot){
		"role":       func(s *snapshot) { s.own["u1"][0].scope = uint32(len(s.strs)) },
		"group role": func(s *snapshot) { s.groupRoles["g1"][0].role = uint32(len(s.strs)) },
		"membership": func(s *snapshot) { s.memberships["u1"][0].access = uint32(len(s.strs)) },
	} {
		bad := mk()
		edit(bad)
		if _, err := decode(bad, "t1"); err == nil {
			t.Errorf("%s: a string index out of range decoded", name)
		}
	}
}
