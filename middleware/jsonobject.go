package middleware

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// This file reads the JSON objects of a token — its header and its claims —
// in one pass each: the pass validates the document as encoding/json does,
// refuses duplicate members, and hands each member to the caller, which
// decodes the few it reads. encoding/json would scan the document twice
// (json.Unmarshal validates before it decodes) and a third time for the
// duplicate check, and its reflection costs more than the scans.

// errNotJSON reports a document that json.Valid would refuse.
var errNotJSON = errors.New("not valid JSON")

// smallObject is how many member names an object may have before the
// duplicate check moves from comparing hashes pairwise to a map, so that an
// object of thousands of members costs linear time.
const smallObject = 32

// members iterates over the top-level members of a JSON object:
//
//	m := members{obj: b}
//	for m.next() {
//		// m.name, m.folded, m.value
//	}
//	if m.err != nil { … }
//
// It refuses a document that is not valid JSON — accepting exactly what
// json.Valid accepts — or not an object, and an object with a repeated
// member. It validates as it goes: the loop may have seen members of a
// document it then refuses, and sees none after a repeat.
//
// RFC 7519 §4 lets parsers either reject duplicates or keep the last one;
// Go keeps the last, so {"aud":"theirs","aud":"ours"} would be read
// differently by another parser. Entra never emits duplicates, so refusing
// them costs nothing and removes the ambiguity. Names are compared as
// encoding/json matches them to struct fields: without regard to case
// ([foldKey]). {"oid":"A","OID":"B"} holds one oid for Go, which reads B, and
// two distinct members for a case-sensitive parser.
//
// name and folded may be views of obj, valid while obj is unchanged; obj
// must not change while the iteration runs.
type members struct {
	obj []byte
	err error

	// The current member: its name unescaped, the name folded as encoding/json
	// matches it, and its value as raw JSON. For a string value, escaped and
	// nonASCII describe its content.
	name, folded      string
	value             []byte
	escaped, nonASCII bool

	doc     string // obj, viewed as a string: names are substrings of it
	i       int    // where the next member or the end of the object is
	started bool
	n       int // members so far
	names   [smallObject]string
	hashes  [smallObject]uint64
	many    map[string]struct{}
}

// next moves to the next member, reporting false at the end of the object
// or on an error (then in m.err).
func (m *members) next() bool {
	if m.err != nil {
		return false
	}
	ok, err := m.advance()
	if err != nil {
		m.err = err
		return false
	}
	return ok
}

func (m *members) advance() (bool, error) {
	b := m.obj
	i := m.i
	if !m.started {
		m.started = true
		if i = skipSpace(b, 0); i == len(b) || b[i] != '{' {
			return false, errors.New("not a JSON object")
		}
		m.doc = unsafe.String(unsafe.SliceData(b), len(b))
		if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
			return false, checkEnd(b, i+1)
		}
	} else {
		switch i = skipSpace(b, i); {
		case i < len(b) && b[i] == '}':
			return false, checkEnd(b, i+1)
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		default:
			return false, errNotJSON
		}
	}
	if i >= len(b) || b[i] != '"' {
		return false, errNotJSON
	}
	end, escaped, _ := scanString(b, i)
	if end < 0 {
		return false, errNotJSON
	}
	m.name = m.doc[i+1 : end-1]
	if escaped {
		name, err := decodeValue[string](b[i:end])
		if err != nil {
			return false, errNotJSON
		}
		m.name = name
	}
	m.folded = foldKey(m.name)
	if err := m.remember(); err != nil {
		return false, err
	}
	if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
		return false, errNotJSON
	}
	i = skipSpace(b, i+1)
	m.escaped, m.nonASCII = false, false
	var vend int
	switch {
	case i >= len(b):
		return false, errNotJSON
	case b[i] == '"':
		vend, m.escaped, m.nonASCII = scanString(b, i)
	case b[i] == '{' || b[i] == '[':
		vend = scanNested(b, i, 1)
	default:
		vend = scanScalar(b, i)
	}
	if vend < 0 {
		return false, errNotJSON
	}
	m.value, m.i = b[i:vend], vend
	return true, nil
}

// remember records the current member's folded name, refusing a repeat.
func (m *members) remember() error {
	f := m.folded
	if m.many == nil && m.n < smallObject {
		h := nameHash(f)
		for j := range m.n {
			if m.hashes[j] == h && m.names[j] == f {
				return m.duplicate()
			}
		}
		m.names[m.n], m.hashes[m.n] = f, h
		m.n++
		return nil
	}
	if m.many == nil {
		// Sized for about as many members as the rest of obj can hold, so
		// that it does not grow step by step under thousands of them.
		m.many = make(map[string]struct{}, max(2*smallObject, (len(m.obj)-m.i)/8))
		for _, s := range m.names {
			m.many[s] = struct{}{}
		}
	}
	if _, dup := m.many[f]; dup {
		return m.duplicate()
	}
	m.many[f] = struct{}{}
	return nil
}

func (m *members) duplicate() error { return fmt.Errorf("duplicate member %.40q", m.name) }

// nameHash is FNV-1a, enough to tell member names apart before comparing them.
func nameHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// str decodes the current value as encoding/json decodes a string, reporting
// false when it is not a string. A string without escapes and in valid
// UTF-8 is copied as it is; others go through encoding/json, which unescapes
// and replaces invalid UTF-8 with U+FFFD.
func (m *members) str() (string, bool) {
	v := m.value
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if s := v[1 : len(v)-1]; !m.escaped && (!m.nonASCII || utf8.Valid(s)) {
		return string(s), true
	}
	s, err := decodeValue[string](v)
	return s, err == nil
}

// decodeValue is json.Unmarshal into a new T.
func decodeValue[T any](v []byte) (T, error) {
	var t T
	err := json.Unmarshal(v, &t)
	return t, err
}

// checkEnd refuses anything but whitespace after the object that ends at i.
func checkEnd(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errNotJSON
	}
	return nil
}

// The scanners below validate JSON (RFC 8259) as encoding/json's scanner
// does — the same grammar, bytes of 0x80 and above accepted in strings
// whether or not they are UTF-8, at most maxJSONDepth nested arrays and
// objects — and return the index just past what they scanned, or -1.

// maxJSONDepth is encoding/json's limit on nesting, the top level included.
const maxJSONDepth = 10000

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringClass sorts the bytes inside a JSON string: 0 needs nothing, 1 ends
// the run (a quote, a backslash, a control character), 2 is not ASCII.
var stringClass = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = 1
	}
	t['"'], t['\\'] = 1, 1
	for c := 0x80; c < 0x100; c++ {
		t[c] = 2
	}
	return t
}()

// scanString scans the string that starts at b[i] (a quote), reporting
// whether it holds an escape sequence and whether it holds a byte outside
// ASCII.
func scanString(b []byte, i int) (end int, escaped, nonASCII bool) {
	j := i + 1
	for {
		for j < len(b) && stringClass[b[j]] == 0 {
			j++
		}
		if j >= len(b) {
			return -1, false, false
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, nonASCII
		case c >= 0x80:
			nonASCII = true
		case c == '\\':
			escaped = true
			if j++; j == len(b) {
				return -1, false, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) || !isHex(b[j+1]) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) {
					return -1, false, false
				}
				j += 4
			default:
				return -1, false, false
			}
		default: // a control character
			return -1, false, false
		}
		j++
	}
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// scanScalar scans a number, true, false or null that starts at b[i].
func scanScalar(b []byte, i int) int {
	for _, lit := range [...]string{"true", "false", "null"} {
		if b[i] == lit[0] {
			if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
				return i + len(lit)
			}
			return -1
		}
	}
	// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = scanDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := scanDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := scanDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func scanDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// levels records, one bit per nesting level, whether an open level is an
// object (or an array). The first 64 levels need no allocation.
type levels struct {
	shallow uint64
	deep    []uint64 // levels from 64 on, allocated when a document nests that deep
}

func (l *levels) set(d int, object bool) {
	w := &l.shallow
	if d >= 64 {
		if l.deep == nil {
			l.deep = make([]uint64, maxJSONDepth/64)
		}
		w = &l.deep[d/64-1]
	}
	if object {
		*w |= 1 << (d % 64)
	} else {
		*w &^= 1 << (d % 64)
	}
}

func (l *levels) object(d int) bool {
	w := l.shallow
	if d >= 64 {
		w = l.deep[d/64-1]
	}
	return w&(1<<(d%64)) != 0
}

// scanNested scans the array or object that starts at b[i], inside depth
// levels of nesting. It keeps its own stack of open levels, one bit each,
// rather than recursing: 12 KiB of an attacker's brackets must not grow the
// goroutine's stack by a frame per level; and the stack costs nothing until
// a document nests 64 levels deep, so that thousands of small arrays cost
// no more than their bytes.
func scanNested(b []byte, i, depth int) int {
	var open levels
	base := depth
	for {
		// b[i] starts a value.
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth == maxJSONDepth {
				return -1
			}
			isObject := c == '{'
			open.set(depth, isObject)
			depth++
			i = skipSpace(b, i+1)
			if i < len(b) && (isObject && b[i] == '}' || !isObject && b[i] == ']') {
				i++
				depth--
				break // an empty array or object is a value that ended
			}
			if isObject {
				if i = scanMemberName(b, i); i < 0 {
					return -1
				}
			}
			continue
		case c == '"':
			if i, _, _ = scanString(b, i); i < 0 {
				return -1
			}
		default:
			if i = scanScalar(b, i); i < 0 {
				return -1
			}
		}
		// A value ended at i: close levels, or go on to the next value.
	closing:
		for {
			if depth == base {
				return i
			}
			isObject := open.object(depth - 1)
			if i = skipSpace(b, i); i >= len(b) {
				return -1
			}
			switch c := b[i]; {
			case c == ',':
				i = skipSpace(b, i+1)
				if isObject {
					if i = scanMemberName(b, i); i < 0 {
						return -1
					}
				}
				break closing
			case isObject && c == '}', !isObject && c == ']':
				i++
				depth--
			default:
				return -1
			}
		}
	}
}

// scanMemberName scans a member's name and the colon after it, returning
// where its value starts.
func scanMemberName(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	end, _, _ := scanString(b, i)
	if end < 0 {
		return -1
	}
	if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
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
