package graphcheck

import (
	"strings"
	"testing"
)

// TestPrincipalLookupKey checks that LookupKey tells every kind and Need
// apart (an answer cached for one must not serve another), also for a Need
// bit it has no code for, while Key stays "tenant/object" for caches of
// per-object facts.
func TestPrincipalLookupKey(t *testing.T) {
	const tid, oid = "72f988bf-86f1-41af-91ab-2d7cd011db47", "4d5e6f70-8192-4a3b-8c4d-5e6f70819203"
	seen := map[string]Principal{}
	for _, sp := range []bool{false, true} {
		for need := range Need(8) {
			p := Principal{TenantID: tid, ObjectID: oid, ServicePrincipal: sp, Need: need}
			if got := p.Key(); got != tid+"/"+oid {
				t.Errorf("%+v: Key() = %q, want tenant/object", p, got)
			}
			k := p.LookupKey()
			if !strings.HasPrefix(k, tid+"/"+oid+"/") {
				t.Errorf("%+v: LookupKey() = %q does not start with tenant/object/", p, k)
			}
			if q, dup := seen[k]; dup {
				t.Errorf("LookupKey() = %q for both %+v and %+v", k, q, p)
			}
			seen[k] = p
		}
	}
	p := Principal{TenantID: tid, ObjectID: oid, Need: NeedAccount | NeedRisk}
	if got, want := p.LookupKey(), tid+"/"+oid+"/u/ar"; got != want {
		t.Errorf("LookupKey() = %q, want %q", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { _ = p.LookupKey() }); n > 1 {
		t.Errorf("LookupKey allocates %v times, want at most 1 (as Key)", n)
	}
}
