package middleware

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzClaimIndex holds Principal.Claim to encoding/json: for any payload
// decodeIndexedClaims accepts, every member encoding/json sees answers
// with the very bytes of its value, looked up by its name in any case, and
// a name no member has answers nothing. The index never changes what the
// decoder accepts.
//
//	go test -run XXX -fuzz '^FuzzClaimIndex$' -fuzztime 10s ./middleware/
func FuzzClaimIndex(f *testing.F) {
	for _, s := range []string{
		`{"amr":["pwd","mfa"],"acrs":["c1"],"xms_cc":"cp1"}`,
		" { \"a\" : 1 ,\n\"b\":[ {\"a\":2} ] , \"c\" : \"x\\\"y\" } ",
		`{"\u0061mr":1,"Xms_St":{"k":null},"x":"\u00e9"}`,
		`{"xms_\u212Aey":true}`,
		`{}`,
		`{"a":1,"A":2}`,
		`{"":0,"\"":1}`,
		"{\"n\xff\":1}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var buf [claimRefsOnStack]claimRef
		_, refs, err := decodeIndexedClaims(payload, buf[:0])
		if _, plainErr := decodeClaims(payload); (err == nil) != (plainErr == nil) {
			t.Fatalf("indexed decoding error %v, plain %v", err, plainErr)
		}
		if err != nil {
			return
		}
		tc := newTokenClaims(payload, refs)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatalf("decodeClaims accepted what encoding/json refuses: %v", err)
		}
		if len(tc.refs) != len(m) {
			t.Fatalf("%d members indexed, encoding/json sees %d", len(tc.refs), len(m))
		}
		for name, want := range m {
			for _, asked := range []string{name, asciiUpper(name), foldKey(name)} {
				got, ok := tc.lookup(asked)
				if !ok || !bytes.Equal(got, want) {
					t.Fatalf("lookup(%q) = %q, %v; encoding/json read %q for %q", asked, got, ok, want, name)
				}
			}
		}
		if _, ok := tc.lookup("\x00not a member"); ok {
			t.Fatal("lookup found a member no payload has")
		}
	})
}

// asciiUpper upper-cases the ASCII letters of s, which folds to the same key.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
