package middleware

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// errorsSource is what errors.go declares, read from its syntax tree.
type errorsSource struct {
	codes     map[string]string // Code constant name → its string value
	sentinels map[string]string // &rejectionError{…} variable name → the identifier in its code field
	kinds     []string          // the arguments of kinds(…) initialising rejectionKinds
}

// parseErrorsSource reads errors.go. A sentinel whose code field is not a
// plain identifier (a string literal, say) is recorded as "", which
// TestRejectionTable rejects: each code string is written once, in its
// constant.
func parseErrorsSource(t *testing.T) errorsSource {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	src := errorsSource{codes: map[string]string{}, sentinels: map[string]string{}}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, spec := range gd.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				switch v := vs.Values[i].(type) {
				case *ast.BasicLit:
					if gd.Tok == token.CONST && strings.HasPrefix(name.Name, "Code") && v.Kind == token.STRING {
						s, err := strconv.Unquote(v.Value)
						if err != nil {
							t.Fatal(err)
						}
						src.codes[name.Name] = s
					}
				case *ast.UnaryExpr:
					cl, _ := v.X.(*ast.CompositeLit)
					if v.Op != token.AND || cl == nil {
						continue
					}
					if typ, _ := cl.Type.(*ast.Ident); typ == nil || typ.Name != "rejectionError" {
						continue
					}
					src.sentinels[name.Name] = ""
					for _, e := range cl.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok && kv.Key.(*ast.Ident).Name == "code" {
							if id, ok := kv.Value.(*ast.Ident); ok {
								src.sentinels[name.Name] = id.Name
							}
						}
					}
				case *ast.CallExpr:
					if fn, ok := v.Fun.(*ast.Ident); ok && fn.Name == "kinds" && name.Name == "rejectionKinds" {
						for _, a := range v.Args {
							id, _ := a.(*ast.Ident)
							if id == nil {
								t.Fatalf("kinds(…) argument %T is not a sentinel name", a)
							}
							src.kinds = append(src.kinds, id.Name)
						}
					}
				}
			}
		}
	}
	return src
}

// TestRejectionTable proves, from errors.go's source and the values it
// builds, that the sentinels are the one rejection table: rejectionKinds
// lists each exactly once, each sentinel names its code by its Code
// constant, every Code constant but CodeInternal belongs to exactly one
// sentinel, and what a client is told is well-formed.
func TestRejectionTable(t *testing.T) {
	src := parseErrorsSource(t)
	if len(src.sentinels) < 24 || len(src.codes) < 25 {
		t.Fatalf("parsed %d sentinels and %d codes: the parser no longer recognises errors.go", len(src.sentinels), len(src.codes))
	}

	// rejectionKinds is complete and has no duplicates.
	listed := slices.Sorted(slices.Values(src.kinds))
	if len(slices.Compact(slices.Clone(listed))) != len(listed) {
		t.Errorf("rejectionKinds lists a sentinel twice: %v", listed)
	}
	var declared []string
	for name := range src.sentinels {
		declared = append(declared, name)
	}
	slices.Sort(declared)
	if !slices.Equal(listed, declared) {
		t.Errorf("rejectionKinds lists\n%v\nerrors.go declares\n%v", listed, declared)
	}
	if len(rejectionKinds) != len(src.kinds) {
		t.Fatalf("rejectionKinds has %d entries, kinds(…) %d arguments", len(rejectionKinds), len(src.kinds))
	}

	// Each code string is written once, in its constant, and each constant
	// but CodeInternal is the code of exactly one sentinel.
	users := map[string][]string{}
	for name, code := range src.sentinels {
		if _, ok := src.codes[code]; !ok {
			t.Errorf("%s: code field is %q, want a Code constant", name, code)
		}
		users[code] = append(users[code], name)
	}
	for code := range src.codes {
		want := 1
		if code == "CodeInternal" {
			want = 0
		}
		if len(users[code]) != want {
			t.Errorf("%s is the code of %v, want %d sentinel(s)", code, users[code], want)
		}
	}
	values := map[string]bool{}
	for name, v := range src.codes {
		if values[v] {
			t.Errorf("%s = %q: the value of another Code constant too", name, v)
		}
		values[v] = true
	}

	// The values built at run time are the ones declared, and well-formed.
	seen := map[string]bool{}
	for i, k := range rejectionKinds {
		name := src.kinds[i]
		if want := src.codes[src.sentinels[name]]; k.code != want {
			t.Errorf("%s: code %q, errors.go says %q", name, k.code, want)
		}
		if seen[k.code] {
			t.Errorf("%s: code %q used twice", name, k.code)
		}
		seen[k.code] = true
		for j, other := range rejectionKinds {
			if errors.Is(fmt.Errorf("wrapped: %w", k), other) != (i == j) {
				t.Errorf("errors.Is(wrapped %s, %s) = %v", name, src.kinds[j], i != j)
			}
		}
		if !strings.HasPrefix(k.msg, "middleware: ") {
			t.Errorf("%s: message %q lacks the package prefix", name, k.msg)
		}
		switch k.status {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusServiceUnavailable:
		default:
			t.Errorf("%s: status %d", name, k.status)
		}
		switch k.oauth {
		case "", OAuthInvalidRequest, OAuthInvalidToken, OAuthInsufficientScope:
		case OAuthInsufficientClaims:
			// Microsoft's claims challenge must be a 401.
			if k.status != http.StatusUnauthorized {
				t.Errorf("%s: insufficient_claims with status %d, want 401", name, k.status)
			}
		default:
			t.Errorf("%s: OAuth error %q", name, k.oauth)
		}
		if k.status == http.StatusServiceUnavailable && k.oauth != "" {
			t.Errorf("%s: a 503 with OAuth error %q: the token is not at fault", name, k.oauth)
		}
		// RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
		if k.description == "" || strings.ContainsFunc(k.description, func(r rune) bool { return r < 0x20 || r > 0x7e || r == '"' || r == '\\' }) {
			t.Errorf("%s: description %q is empty or not RFC 6750 error_description text", name, k.description)
		}
	}
	if len(seen) != len(src.codes)-1 {
		t.Errorf("%d distinct codes among the sentinels, %d Code constants besides CodeInternal", len(seen), len(src.codes)-1)
	}
}
