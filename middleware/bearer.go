package middleware

import (
	"fmt"
	"net/http"
)

// DefaultMaxTokenBytes is the default cap on a bearer token's length. Entra
// access tokens are 1–4 KiB; a token with hundreds of group IDs stays well
// under 16 KiB, because Entra replaces large group lists with an overage claim.
const DefaultMaxTokenBytes = 16 << 10

// BearerToken extracts the token from a request's Authorization header as
// RFC 6750 §2.1 describes: "Bearer" (any case), one or more spaces, then a
// b64token. It deliberately ignores the form-body and query-string methods of
// §2.2 and §2.3 and cookies: tokens in URLs leak into logs and caches.
//
// It returns [ErrTokenMissing] when there is no Authorization header or it
// uses another scheme (Basic, Negotiate…), [ErrRequestMalformed] when the
// header appears more than once, and [ErrTokenMalformed] when the token is
// empty, longer than maxBytes, or contains characters outside the b64token
// alphabet. It never parses the token.
func BearerToken(r *http.Request, maxBytes int) (string, error) {
	tok, _, err := bearerToken(r, maxBytes)
	return tok, err
}

// bearerToken is [BearerToken] that also reports, from the same scan,
// whether the token uses only the characters of a compact JWS (base64url and
// '.'), so that [Authenticator.Authenticate] refuses other spellings before
// hashing the token, at no extra cost on the request path.
func bearerToken(r *http.Request, maxBytes int) (tok string, jwsAlphabet bool, err error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", false, ErrTokenMissing
	case 1:
	default:
		return "", false, fmt.Errorf("%w: %d Authorization headers", ErrRequestMalformed, len(values))
	}
	h := values[0]
	const scheme = "bearer"
	if len(h) < len(scheme) || !equalFoldASCII(h[:len(scheme)], scheme) {
		return "", false, ErrTokenMissing
	}
	rest := h[len(scheme):]
	if rest == "" {
		return "", false, fmt.Errorf("%w: empty bearer token", ErrTokenMalformed)
	}
	if rest[0] != ' ' {
		// "Bearerx…" is another scheme, not a bearer token.
		return "", false, ErrTokenMissing
	}
	i := 0
	for i < len(rest) && rest[i] == ' ' {
		i++
	}
	tok = rest[i:]
	b64, jws := scanToken(tok)
	switch {
	case tok == "":
		return "", false, fmt.Errorf("%w: empty bearer token", ErrTokenMalformed)
	case len(tok) > maxBytes:
		return "", false, fmt.Errorf("%w: token of %d bytes exceeds the %d-byte cap", ErrTokenMalformed, len(tok), maxBytes)
	case !b64:
		return "", false, fmt.Errorf("%w: token has characters outside the b64token alphabet", ErrTokenMalformed)
	}
	return tok, jws, nil
}

// Classes of tokenChar.
const (
	b64tokenChar = 1 << iota // RFC 6750 b64token before padding: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"
	jwsChar                  // compact JWS: base64url (ALPHA / DIGIT / "-" / "_") and "."
)

// tokenChar classifies bytes for [scanToken]. A table keeps the scan of a
// 1–4 KiB token branch-light; it runs on every request.
var tokenChar = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			t[c] = b64tokenChar | jwsChar
		} else if c == '~' || c == '+' || c == '/' {
			t[c] = b64tokenChar
		}
	}
	return t
}()

// scanToken reports, in one pass, whether s is a b64token (RFC 6750 §2.1:
// b64token characters, then only '=' padding) and whether it uses only the
// characters of a compact JWS.
func scanToken(s string) (b64token, jws bool) {
	if s == "" {
		return false, false
	}
	// The common case, one AND per byte with no branch: every byte is a
	// compact JWS character (which is also a b64token character).
	all := uint8(b64tokenChar | jwsChar)
	for i := 0; i < len(s); i++ {
		all &= tokenChar[s[i]]
	}
	if all&jwsChar != 0 {
		return true, true
	}
	// b64token characters, then only '=' padding.
	i := 0
	for i < len(s) && tokenChar[s[i]]&b64tokenChar != 0 {
		i++
	}
	if i == 0 {
		return false, false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false, false
		}
	}
	return true, false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
