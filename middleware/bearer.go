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
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", ErrTokenMissing
	case 1:
	default:
		return "", fmt.Errorf("%w: %d Authorization headers", ErrRequestMalformed, len(values))
	}
	h := values[0]
	const scheme = "bearer"
	if len(h) < len(scheme) || !equalFoldASCII(h[:len(scheme)], scheme) {
		return "", ErrTokenMissing
	}
	rest := h[len(scheme):]
	if rest == "" {
		return "", fmt.Errorf("%w: empty bearer token", ErrTokenMalformed)
	}
	if rest[0] != ' ' {
		// "Bearerx…" is another scheme, not a bearer token.
		return "", ErrTokenMissing
	}
	i := 0
	for i < len(rest) && rest[i] == ' ' {
		i++
	}
	tok := rest[i:]
	switch {
	case tok == "":
		return "", fmt.Errorf("%w: empty bearer token", ErrTokenMalformed)
	case len(tok) > maxBytes:
		return "", fmt.Errorf("%w: token of %d bytes exceeds the %d-byte cap", ErrTokenMalformed, len(tok), maxBytes)
	case !isB64Token(tok):
		return "", fmt.Errorf("%w: token has characters outside the b64token alphabet", ErrTokenMalformed)
	}
	return tok, nil
}

// b64tokenChar marks the characters of RFC 6750's b64token before padding:
// ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/". A table keeps the scan
// of a 1–4 KiB token branch-light; it runs on every request.
var b64tokenChar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// isB64Token reports whether s matches RFC 6750's
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChar[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
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
