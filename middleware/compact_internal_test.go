package middleware

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestFoldKeyIsEqualFold checks foldKey against bytes.EqualFold, the
// comparison encoding/json matches member names with, over every rune: a rune
// and each member of its unicode.SimpleFold orbit share a key, and two runes
// that share a key are EqualFold (no two orbits collide).
func TestFoldKeyIsEqualFold(t *testing.T) {
	byKey := map[string]rune{}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		k := foldKey(s)
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if fk := foldKey(string(f)); fk != k {
				t.Fatalf("foldKey(%U) = %q but foldKey(%U) = %q: the same orbit", r, k, f, fk)
			}
		}
		if first, ok := byKey[k]; ok && !bytes.EqualFold([]byte(string(first)), []byte(s)) {
			t.Fatalf("%U and %U share the key %q but are not EqualFold", first, r, k)
		} else if !ok {
			byKey[k] = r
		}
	}
}

// TestCheckUniqueKeysFolds: names that encoding/json takes for one another
// are duplicates. For each pair of names the test also asks encoding/json
// itself: it decodes {first: "A", second: "B"} into a struct whose only field
// is named first, and the pair must be refused exactly when Go reads "B".
func TestCheckUniqueKeysFolds(t *testing.T) {
	tests := []struct {
		name          string
		first, second string
		dup           bool
	}{
		{"same name", "oid", "oid", true},
		{"upper case", "oid", "OID", true},
		{"mixed case", "preferred_username", "Preferred_UserName", true},
		{"Kelvin sign for k", "kid", "\u212aid", true},
		{"Kelvin sign for K", "KID", "\u212aid", true},
		{"long s for s", "scp", "\u017fcp", true},
		{"long s for S", "SUB", "\u017fub", true},
		{"non-ASCII letters in two cases", "\u00e9tat", "\u00c9TAT", true},
		{"Greek sigma forms", "\u03c3x", "\u03a3X", true},
		{"final sigma", "\u03c2x", "\u03c3x", true},
		{"different names", "oid", "tid", false},
		{"dotted capital I is not i", "kid", "k\u0130d", false},
		{"dotless i is not i", "kid", "k\u0131d", false},
		{"sharp s is not ss (no full folding)", "ss", "\u00df", false},
		{"underscore is not a dash", "at_hash", "at-hash", false},
		{"name and prefix", "aud", "audx", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := json.Marshal(tt.first)
			b, _ := json.Marshal(tt.second)
			obj := []byte(`{` + string(a) + `:"A",` + string(b) + `:"B"}`)
			err := checkUniqueKeys(obj)
			if (err != nil) != tt.dup {
				t.Fatalf("checkUniqueKeys(%s) = %v, want a duplicate: %v", obj, err, tt.dup)
			}
			typ := reflect.StructOf([]reflect.StructField{{Name: "F", Type: reflect.TypeFor[string](), Tag: reflect.StructTag(`json:` + string(a))}})
			v := reflect.New(typ)
			if err := json.Unmarshal(obj, v.Interface()); err != nil {
				t.Fatal(err)
			}
			if got := v.Elem().Field(0).String(); (got == "B") != tt.dup {
				t.Errorf("encoding/json read %q for %q from %s; checkUniqueKeys says duplicate: %v", got, tt.first, obj, tt.dup)
			}
		})
	}
}

// TestFoldKeyLowerASCIIIsFree: the names Entra emits are their own keys and
// cost no allocation.
func TestFoldKeyLowerASCIIIsFree(t *testing.T) {
	for _, name := range []string{"preferred_username", "oid", "x5t", ""} {
		if k := foldKey(name); k != name {
			t.Errorf("foldKey(%q) = %q", name, k)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = foldKey("preferred_username") }); n != 0 {
		t.Errorf("foldKey of a lower-case ASCII name allocates %v times", n)
	}
}
