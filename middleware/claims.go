package middleware

import (
	"bytes"
	"encoding/json"
	"errors"
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
	Idtyp string      `json:"idtyp"`
	Name  string      `json:"name"`
	PUN   string      `json:"preferred_username"` // v2
	UPN   string      `json:"upn"`                // v1
	UName string      `json:"unique_name"`        // v1
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
