package middleware

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// strictB64 decodes base64url without padding and refuses non-zero trailing
// bits, so that every token has exactly one spelling.
var strictB64 = base64.RawURLEncoding.Strict()

// splitCompact checks that raw is a JWS in the compact serialization Entra
// issues — three non-empty base64url segments, no padding, no whitespace, no
// non-canonical trailing bits — and returns its decoded header and payload.
//
// go-jose is lenient on all of these (it strips whitespace, accepts the JSON
// serialization and decodes base64 loosely), which would give one token many
// spellings: many verified-token cache keys for one token, and a way around
// any deny list keyed on the token string.
func splitCompact(raw string) (header, payload []byte, err error) {
	h, rest, ok1 := strings.Cut(raw, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return nil, nil, fmt.Errorf("%w: not a three-part compact JWS", ErrTokenMalformed)
	}
	var segs [3][]byte
	for i, seg := range [3]string{h, p, sig} {
		if seg == "" {
			return nil, nil, fmt.Errorf("%w: empty JWS segment", ErrTokenMalformed)
		}
		for j := 0; j < len(seg); j++ {
			if c := seg[j]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return nil, nil, fmt.Errorf("%w: JWS segment outside the base64url alphabet", ErrTokenMalformed)
			}
		}
		b, err := strictB64.DecodeString(seg)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: JWS segment is not canonical base64url", ErrTokenMalformed)
		}
		segs[i] = b
	}
	return segs[0], segs[1], nil
}

// checkUniqueKeys refuses a JSON object with a repeated top-level member.
// RFC 7519 §4 lets parsers either reject duplicates or keep the last one;
// Go keeps the last, so {"aud":"theirs","aud":"ours"} would be read
// differently by another parser. Entra never emits duplicates, so refusing
// them costs nothing and removes the ambiguity.
//
// Names are compared as encoding/json matches them to struct fields: without
// regard to case ([foldKey]). {"oid":"A","OID":"B"} holds one oid for Go,
// which reads B, and two distinct members for a case-sensitive parser.
func checkUniqueKeys(obj []byte) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]struct{}, 24)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := t.(string)
		if !ok {
			return errors.New("malformed JSON object")
		}
		folded := foldKey(key)
		if _, dup := seen[folded]; dup {
			return fmt.Errorf("duplicate member %.40q", key)
		}
		seen[folded] = struct{}{}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

// foldKey returns the key under which encoding/json looks a member name up
// among a struct's fields when no field has the exact name: two names have
// the same key exactly when bytes.EqualFold holds for them (Unicode simple
// case folding). Besides ASCII case, that makes "\u212Aid" (U+212A KELVIN
// SIGN) the same name as "kid", and "\u017Fcp" (U+017F LATIN SMALL LETTER
// LONG S) the same as "scp". encoding/json (also built as json/v2's v1 mode)
// folds each rune to the smallest rune of its unicode.SimpleFold orbit; this
// folds to a member of the orbit too, but to the lower-case letter for ASCII
// letters, so that a name in lower-case ASCII — every name Entra emits — is
// its own key and costs no allocation.
func foldKey(name string) string {
	i := 0
	for i < len(name) && name[i] < utf8.RuneSelf && (name[i] < 'A' || name[i] > 'Z') {
		i++
	}
	if i == len(name) {
		return name
	}
	b := make([]byte, i, len(name)+4)
	copy(b, name[:i])
	for _, r := range name[i:] {
		b = utf8.AppendRune(b, foldRune(r))
	}
	return string(b)
}

// foldRune returns the member of r's unicode.SimpleFold orbit that stands for
// the whole orbit: its smallest rune, or, when that is an upper-case ASCII
// letter, the lower-case one (which is in the same orbit).
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	low := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		low = min(low, f)
	}
	if 'A' <= low && low <= 'Z' {
		low += 'a' - 'A'
	}
	return low
}
