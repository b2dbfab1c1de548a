package middleware

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"unsafe"
)

// tokenClaims is what a [Principal] keeps of its token's claims for
// [Principal.Claim]: the verified payload, copied once at verification,
// and where each of its members is, recorded by the decoding pass
// ([decodeIndexedClaims]). A lookup reads the member's name where the
// index points and compares it folded, as the decoder matched names; it
// never scans or decodes the payload again. It is immutable, shared by
// every request that presents the token.
type tokenClaims struct {
	raw  []byte
	refs []claimRef
}

// claimRef locates one member of the payload: the opening quote of its
// name and the end of its value. The value starts after the name and the
// colon ([scanMemberName]). 8 bytes a claim: the index of a typical Entra
// token (25 claims) costs 200 bytes.
type claimRef struct{ name, end uint32 }

// maxIndexedPayload is the largest payload whose offsets fit a claimRef.
const maxIndexedPayload = math.MaxUint32

// claimRefsOnStack is how many members the verification indexes in a
// buffer on its stack before the index grows on the heap: more than an
// Entra access token carries.
const claimRefsOnStack = 48

// memberStart returns where the member after position i of a JSON object
// starts (its name's opening quote): past whitespace and the '{' or ','
// before it. The object is one members has validated up to that member.
func memberStart(obj []byte, i int) int {
	i = skipSpace(obj, i)
	if i < len(obj) && (obj[i] == '{' || obj[i] == ',') {
		i = skipSpace(obj, i+1)
	}
	return i
}

// newTokenClaims copies the verified payload and the index of its members
// into exactly sized memory. refs may be on the caller's stack.
func newTokenClaims(payload []byte, refs []claimRef) tokenClaims {
	return tokenClaims{raw: bytes.Clone(payload), refs: slices.Clip(slices.Clone(refs))}
}

// lookup returns the raw value of the member whose name folds ([foldKey])
// to the same key as name. The payload has no two such members (members
// refuses them as duplicates), so the answer is the value encoding/json,
// and the decoder of the claims the Principal copies, read for that name.
// A name that is lower-case ASCII costs no allocation.
func (t *tokenClaims) lookup(name string) (json.RawMessage, bool) {
	if len(t.refs) == 0 {
		return nil, false
	}
	key := foldKey(name)
	doc := unsafe.String(unsafe.SliceData(t.raw), len(t.raw))
	for _, r := range t.refs {
		start := int(r.name)
		end, escaped, _ := scanString(t.raw, start)
		member := doc[start+1 : end-1]
		if escaped {
			s, err := decodeValue[string](t.raw[start:end])
			if err != nil {
				continue // unreachable: members decoded it
			}
			member = s
		}
		if foldKey(member) != key {
			continue
		}
		v := scanMemberName(t.raw, start)
		e := int(r.end)
		return json.RawMessage(t.raw[v:e:e]), true
	}
	return nil, false
}
