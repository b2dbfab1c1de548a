package middleware

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
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
	if bytes.Equal(b, []byte("null")) {
		return errors.New("string claim is null")
	}
	if err := json.Unmarshal(b, &o.s); err != nil {
		return errors.New("claim is not a string")
	}
	o.set = true
	return nil
}

// presence records that a claim was present, with any value (null too).
type presence bool

func (p *presence) UnmarshalJSON([]byte) error {
	*p = true
	return nil
}

// audience is the aud claim: a string, or an array of strings (RFC 7519 §4.1.3).
type audience []string

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
	if bytes.Equal(b, []byte("null")) {
		return errors.New("date claim is null")
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
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
