package middleware

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// accessClaims is the subset of an Entra access token's claims pimguard reads,
// in both the v1 and the v2 format.
type accessClaims struct {
	Iss   string      `json:"iss"`
	Aud   audience    `json:"aud"`
	Tid   string      `json:"tid"`
	Oid   string      `json:"oid"`
	Sub   string      `json:"sub"`
	Azp   string      `json:"azp"`   // v2
	AppID string      `json:"appid"` // v1
	Scp   string      `json:"scp"`
	Roles []string    `json:"roles"`
	Wids  []string    `json:"wids"`
	Grps  []string    `json:"groups"`
	Acrs  []string    `json:"acrs"` // Conditional Access authentication contexts satisfied
	Iat   numericDate `json:"iat"`
	Nbf   numericDate `json:"nbf"`
	Exp   numericDate `json:"exp"`
	Ver   string      `json:"ver"`
	Idtyp optString   `json:"idtyp"` // optional claim: "app" or "user"
	Name  string      `json:"name"`
	PUN   string      `json:"preferred_username"` // v2
	UPN   string      `json:"upn"`                // v1
	UName string      `json:"unique_name"`        // v1

	// ID-token claims (OpenID Connect Core §2, §3.1.3.6, §3.3.2.11), which
	// no access token carries: whatever their value, their presence makes
	// the token an ID token.
	Nonce  presence `json:"nonce"`
	AtHash presence `json:"at_hash"`
	CHash  presence `json:"c_hash"`

	// Distributed claims (OpenID Connect Core §5.6.2), which Entra uses for
	// the groups overage. pimguard resolves none, but refuses a token whose
	// claim names point at sources it does not define, as go-oidc did.
	ClaimNames   map[string]string      `json:"_claim_names"`
	ClaimSources map[string]claimSource `json:"_claim_sources"`
}

type claimSource struct {
	Endpoint    string `json:"endpoint"`
	AccessToken string `json:"access_token"`
}

// decodeClaims decodes a token payload in one pass over it: a JSON object
// with no duplicate member ([members]), whose members are read into
// accessClaims as encoding/json would read them — names matched without
// regard to case, the same values accepted and refused, the same results —
// without its reflection: strings without escapes and arrays of them are
// copied directly, every other value goes through encoding/json or the
// claim types' UnmarshalJSON. FuzzClaimsDecoding holds it to json.Unmarshal.
func decodeClaims(payload []byte) (accessClaims, error) {
	c, _, err := decodeIndexedClaims(payload, nil)
	return c, err
}

// decodeIndexedClaims is [decodeClaims] that also appends to refs where
// each member of payload is ([claimRef]), from the same pass, for
// [Principal.Claim]. A payload over 4 GiB is decoded but not indexed.
func decodeIndexedClaims(payload []byte, refs []claimRef) (accessClaims, []claimRef, error) {
	var c accessClaims
	m := members{obj: payload}
	index := refs != nil && len(payload) <= maxIndexedPayload
	for {
		prev := m.i // where the member, or the end of the object, starts
		if !m.next() {
			break
		}
		if index {
			refs = append(refs, claimRef{name: uint32(memberStart(payload, prev)), end: uint32(m.i)})
		}
		var err error
		switch m.folded {
		case "iss":
			c.Iss, err = decodeString(&m)
		case "aud":
			err = c.Aud.decode(&m)
		case "tid":
			c.Tid, err = decodeString(&m)
		case "oid":
			c.Oid, err = decodeString(&m)
		case "sub":
			c.Sub, err = decodeString(&m)
		case "azp":
			c.Azp, err = decodeString(&m)
		case "appid":
			c.AppID, err = decodeString(&m)
		case "scp":
			c.Scp, err = decodeString(&m)
		case "roles":
			c.Roles, err = decodeStrings(m.value)
		case "wids":
			c.Wids, err = decodeStrings(m.value)
		case "groups":
			c.Grps, err = decodeStrings(m.value)
		case "acrs":
			c.Acrs, err = decodeStrings(m.value)
		case "iat":
			err = c.Iat.UnmarshalJSON(m.value)
		case "nbf":
			err = c.Nbf.UnmarshalJSON(m.value)
		case "exp":
			err = c.Exp.UnmarshalJSON(m.value)
		case "ver":
			c.Ver, err = decodeString(&m)
		case "idtyp":
			err = c.Idtyp.decode(&m)
		case "name":
			c.Name, err = decodeString(&m)
		case "preferred_username":
			c.PUN, err = decodeString(&m)
		case "upn":
			c.UPN, err = decodeString(&m)
		case "unique_name":
			c.UName, err = decodeString(&m)
		case "nonce":
			err = c.Nonce.UnmarshalJSON(m.value)
		case "at_hash":
			err = c.AtHash.UnmarshalJSON(m.value)
		case "c_hash":
			err = c.CHash.UnmarshalJSON(m.value)
		case "_claim_names":
			c.ClaimNames, err = decodeValue[map[string]string](m.value)
		case "_claim_sources":
			c.ClaimSources, err = decodeValue[map[string]claimSource](m.value)
		}
		if err != nil {
			return accessClaims{}, nil, err
		}
	}
	if m.err != nil {
		return accessClaims{}, nil, m.err
	}
	return c, refs, c.checkClaimSources()
}

// checkClaimSources refuses claim names whose source is empty or undefined.
func (c *accessClaims) checkClaimSources() error {
	for _, src := range c.ClaimNames {
		if _, ok := c.ClaimSources[src]; !ok || src == "" {
			return errors.New("_claim_names names an undefined claim source")
		}
	}
	return nil
}

// The decoders below return what encoding/json would store in a field of
// their type that was unset before (members refuses a second value for a
// field); they return values rather than fill fields so that the claims stay
// on the stack.

// decodeString decodes the current member's value as encoding/json decodes
// a string field: null is "", another type is an error.
func decodeString(m *members) (string, error) {
	if s, ok := m.str(); ok {
		return s, nil
	}
	return decodeValue[string](m.value)
}

// decodeStrings decodes the raw JSON value v as encoding/json decodes a
// []string field ([] is an empty slice, null is nil).
func decodeStrings(v []byte) ([]string, error) {
	if ss, ok := simpleStrings(v); ok {
		return ss, nil
	}
	return decodeValue[[]string](v)
}

// simpleStrings decodes v, a valid JSON value, when it is an array of
// strings without escapes and in valid UTF-8, reporting false otherwise.
func simpleStrings(v []byte) ([]string, bool) {
	if len(v) < 2 || v[0] != '[' {
		return nil, false
	}
	ss := []string{}
	i := skipSpace(v, 1)
	if v[i] == ']' {
		return ss, true
	}
	for {
		if v[i] != '"' {
			return nil, false
		}
		end, escaped, nonASCII := scanString(v, i)
		if end < 0 || escaped || nonASCII && !utf8.Valid(v[i+1:end-1]) {
			return nil, false
		}
		ss = append(ss, string(v[i+1:end-1]))
		if i = skipSpace(v, end); v[i] == ']' {
			return ss, true
		}
		i = skipSpace(v, i+1) // past the comma
	}
}

// tokenKind is what an Entra token is for an API: see [accessClaims.kind].
type tokenKind uint8

const (
	kindRefused tokenKind = iota // neither kind: refused
	kindUser                     // delegated: a user signed in to a client
	kindApp                      // app-only: an application acting for itself
)

// kind tells a user (delegated) access token from an app-only one, and
// refuses every other token — an ID token above all — rather than guess,
// because what a [Guard] checks depends on the kind: it skips the user-only
// account checks (sessions, password, risk) for app-only principals.
//
//   - An access token names the client it was issued to: azp in the v2
//     format (ver "2.0"), appid in v1 (ver "1.0"); another or no ver is
//     refused. Entra's ID tokens name neither, and carry roles and an aud of
//     the client ID whenever the user holds app roles and client and API
//     share one app registration.
//   - A token with nonce, at_hash or c_hash is an ID token.
//   - App-only: idtyp "app" and no scp; or, where the optional idtyp claim
//     is absent, no scp and sub equal to oid, Entra's app-only shape.
//   - User: scp, and idtyp absent or "user".
//
// Anything else is refused: idtyp "app" with scp, idtyp "user" without scp,
// a token with neither idtyp nor scp whose sub is not its oid, an unknown
// idtyp. The error wraps [ErrTokenNotAccessToken].
func (c *accessClaims) kind() (tokenKind, error) {
	if c.Nonce || c.AtHash || c.CHash {
		return kindRefused, fmt.Errorf("%w: nonce, at_hash or c_hash: an ID token", ErrTokenNotAccessToken)
	}
	switch c.Ver {
	case "2.0":
		if c.Azp == "" {
			return kindRefused, fmt.Errorf("%w: v2 token without azp", ErrTokenNotAccessToken)
		}
	case "1.0":
		if c.AppID == "" {
			return kindRefused, fmt.Errorf("%w: v1 token without appid", ErrTokenNotAccessToken)
		}
	default:
		return kindRefused, fmt.Errorf("%w: ver %.10q is neither 1.0 nor 2.0", ErrTokenNotAccessToken, c.Ver)
	}
	switch {
	case !c.Idtyp.set && c.Scp != "", c.Idtyp.set && c.Idtyp.s == "user" && c.Scp != "":
		return kindUser, nil
	case c.Idtyp.set && c.Idtyp.s == "app" && c.Scp == "", !c.Idtyp.set && c.Scp == "" && c.Oid != "" && c.Sub == c.Oid:
		return kindApp, nil
	}
	return kindRefused, fmt.Errorf("%w: neither a user nor an app-only token (idtyp %.10q, scp set %v, sub equal to oid %v)",
		ErrTokenNotAccessToken, c.Idtyp.s, c.Scp != "", c.Sub == c.Oid)
}

// clientID is the client application the token was issued to: azp in v2
// tokens, appid in v1 ones.
func (c *accessClaims) clientID() string {
	if c.Ver == "1.0" {
		return c.AppID
	}
	return c.Azp
}

// optString is an optional string claim that remembers whether it was
// present, so that an empty value is not taken for an absent claim. null is
// an error, like a value of another type.
type optString struct {
	s   string
	set bool
}

func (o *optString) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return errors.New("string claim is null")
	}
	s, err := decodeValue[string](b)
	if err != nil {
		return errors.New("claim is not a string")
	}
	o.s, o.set = s, true
	return nil
}

// decode is UnmarshalJSON for the current member, without encoding/json for
// a string it can copy.
func (o *optString) decode(m *members) error {
	if s, ok := m.str(); ok {
		o.s, o.set = s, true
		return nil
	}
	return o.UnmarshalJSON(m.value)
}

// presence records that a claim was present, with any value (null too).
type presence bool

func (p *presence) UnmarshalJSON([]byte) error {
	*p = true
	return nil
}

// audience is the aud claim: a string, or an array of strings (RFC 7519 §4.1.3).
type audience []string

// decode is UnmarshalJSON for the current member, without encoding/json for
// a string or an array of strings it can copy.
func (a *audience) decode(m *members) error {
	if s, ok := m.str(); ok {
		*a = audience{s}
		return nil
	}
	if ss, ok := simpleStrings(m.value); ok {
		*a = ss
		return nil
	}
	return a.UnmarshalJSON(m.value)
}

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = ss
	return nil
}

// numericDate is a JWT NumericDate (seconds since the epoch, possibly
// fractional). The zero value means the claim was absent.
type numericDate struct {
	t   time.Time
	set bool
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return errors.New("date claim is null")
	}
	// encoding/json hands over a valid JSON value and decodes a number into
	// a float64 with strconv.ParseFloat, as here.
	if len(b) == 0 || b[0] != '-' && (b[0] < '0' || b[0] > '9') {
		return errors.New("date claim is not a number")
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return errors.New("date claim is not a number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return errors.New("date claim out of range")
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9))
	d.set = true
	return nil
}
