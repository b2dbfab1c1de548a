package middleware

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// referenceClaims is the decoding decodeClaims replaced, kept as its
// specification: json.Decoder walks the top-level members to refuse
// duplicates (names folded by foldKey), json.Unmarshal reads the claims, and
// claim names must point at defined claim sources.
func referenceClaims(payload []byte) (accessClaims, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return accessClaims{}, errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return accessClaims{}, err
		}
		key, ok := t.(string)
		if !ok {
			return accessClaims{}, errors.New("malformed JSON object")
		}
		if seen[foldKey(key)] {
			return accessClaims{}, fmt.Errorf("duplicate member %q", key)
		}
		seen[foldKey(key)] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return accessClaims{}, err
		}
	}
	var c accessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return accessClaims{}, err
	}
	return c, c.checkClaimSources()
}

// FuzzClaimsDecoding decodes arbitrary bytes as a token payload the way
// Authenticator.verify does (decodeClaims), then runs the claim checks and
// builds the principal. It must never panic; decodeClaims must accept exactly
// what the reference decoding accepts — a JSON object without duplicate
// members (compared as encoding/json folds them), read by json.Unmarshal —
// and produce the same claims; dates that decode are in range; and whenever
// checkClaims passes, the claims really are those of an access token for this
// API from the expected tenant, valid now within the skew, of the kind the
// principal says (user or app-only), and not an ID token.
//
//	go test -run XXX -fuzz '^FuzzClaimsDecoding$' -fuzztime 10s ./middleware/
func FuzzClaimsDecoding(f *testing.F) {
	const (
		tenant   = "8d3f0a52-6b1e-4c2a-9f4e-1a7b2c3d4e5f"
		audience = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
	)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	skew := DefaultClockSkew
	a := &Authenticator{
		cfg:       AuthenticatorConfig{Now: func() time.Time { return now }},
		audiences: map[string]bool{audience: true, "api://pimguard-test-api": true},
		skew:      skew,
	}
	is := &issuer{iss: "https://sts.windows.net/" + tenant + "/", tenant: tenant}
	valid := `{"aud":"` + audience + `","iss":"https://sts.windows.net/` + tenant + `/","iat":1795600800,"nbf":1795600800,` +
		`"exp":1795605300,"oid":"4d5e6f70-8192-4a3b-8c4d-5e6f70819203","tid":"` + tenant + `","scp":"access_as_user","ver":"1.0",` +
		`"appid":"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}`
	app := strings.NewReplacer(`"scp":"access_as_user"`, `"roles":["Directory.Admin"],"sub":"4d5e6f70-8192-4a3b-8c4d-5e6f70819203"`).Replace(valid)
	f.Add([]byte(valid))
	f.Add([]byte(app))
	f.Add([]byte(strings.Replace(app, `"roles"`, `"idtyp":"app","roles"`, 1)))
	f.Add([]byte(strings.Replace(valid, `"ver":"1.0"`, `"ver":"2.0","azp":"x"`, 1)))
	f.Add([]byte(strings.Replace(valid, `"scp"`, `"nonce":"n","scp"`, 1)))
	f.Add([]byte(strings.Replace(valid, `"aud":`, `"aud":"api://evil","aud":`, 1)))
	f.Add([]byte(strings.Replace(valid, `"exp":1795605300`, `"exp":1795605300.999`, 1)))
	f.Add([]byte(`{"aud":["a",["b"]],"exp":1e400}`))
	f.Add([]byte(strings.Replace(valid, `"scp":"access_as_user"`, `"\u0073cp":"access_\u0061s_user","Roles":["a\"b",null],"WIDS":[],"name":"J\u00e9r\u00f4me"`, 1)))
	f.Add([]byte(strings.Replace(valid, `"tid":"`, "\"name\":\"\xff\xfe\",\"oid\":[\"\xc3\"],\"tid\":\"", 1)))
	f.Add([]byte(strings.Replace(valid, `"aud":"`+audience+`"`, `"aud":["`+audience+`", "x" ],"groups":null,"_claim_names":{"groups":"src1"},"_claim_sources":{"src1":{"endpoint":"https://graph"}}`, 1)))
	f.Add([]byte(` {"iat":1.5e9,"exp":-0,"nbf":"1","idtyp":null} `))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := decodeClaims(payload)
		ref, refErr := referenceClaims(payload)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("decodeClaims error %v, reference error %v", err, refErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(c, ref) {
			t.Fatalf("decodeClaims read %+v, the reference %+v", c, ref)
		}
		for _, d := range []numericDate{c.Iat, c.Nbf, c.Exp} {
			if d.set && (d.t.Before(time.Unix(0, 0)) || d.t.After(time.Unix(1e11, 0))) {
				t.Fatalf("date %v out of range", d.t)
			}
		}
		if err := a.checkClaims(&c, is); err != nil {
			if RejectionFor(err, "").Code == CodeInternal {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		switch {
		case c.Oid == "":
			t.Fatal("accepted without oid")
		case strings.ToLower(c.Tid) != tenant:
			t.Fatalf("accepted tid %q", c.Tid)
		case !c.Exp.set || now.After(c.Exp.t.Add(skew)):
			t.Fatalf("accepted exp %v (set %v)", c.Exp.t, c.Exp.set)
		case !c.Iat.set || c.Iat.t.After(now.Add(skew)):
			t.Fatalf("accepted iat %v (set %v)", c.Iat.t, c.Iat.set)
		case c.Nbf.set && c.Nbf.t.After(now.Add(skew)):
			t.Fatalf("accepted nbf %v", c.Nbf.t)
		case c.Scp == "" && len(c.Roles) == 0:
			t.Fatal("accepted without scp or roles")
		case !slices.ContainsFunc(c.Aud, func(s string) bool { return a.audiences[s] }):
			t.Fatalf("accepted aud %q", []string(c.Aud))
		case slices.ContainsFunc(c.Aud, isGraphAudience):
			t.Fatalf("accepted Microsoft Graph's aud %q", []string(c.Aud))
		}
		p := principalOf(&c)
		if p.TenantID != tenant || p.ObjectID != strings.ToLower(c.Oid) || p.ObjectID == "" {
			t.Fatalf("principal %s/%s from tid %q oid %q", p.TenantID, p.ObjectID, c.Tid, c.Oid)
		}
		switch {
		case bool(c.Nonce || c.AtHash || c.CHash):
			t.Fatal("accepted an ID token (nonce, at_hash or c_hash)")
		case c.Ver != "1.0" && c.Ver != "2.0":
			t.Fatalf("accepted ver %q", c.Ver)
		case c.Ver == "2.0" && (c.Azp == "" || p.AppID != c.Azp), c.Ver == "1.0" && (c.AppID == "" || p.AppID != c.AppID):
			t.Fatalf("accepted ver %q with azp %q, appid %q (AppID %q)", c.Ver, c.Azp, c.AppID, p.AppID)
		case p.AppOnly && (c.Scp != "" || c.Idtyp.set && c.Idtyp.s != "app" || !c.Idtyp.set && c.Sub != c.Oid):
			t.Fatalf("app-only principal from scp %q, idtyp %q (set %v), sub %q, oid %q", c.Scp, c.Idtyp.s, c.Idtyp.set, c.Sub, c.Oid)
		case !p.AppOnly && (c.Scp == "" || c.Idtyp.set && c.Idtyp.s != "user"):
			t.Fatalf("user principal from scp %q, idtyp %q (set %v)", c.Scp, c.Idtyp.s, c.Idtyp.set)
		}
	})
}
