package middleware

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
)

// strictB64 decodes base64url without padding and refuses non-zero trailing
// bits, so that every token has exactly one spelling.
var strictB64 = base64.RawURLEncoding.Strict()

// compactJWS is a token in the compact serialization, split and decoded
// once: everything the verification reads comes from here.
type compactJWS struct {
	header, payload, signature []byte // the decoded segments
	// signingInput is the raw header and payload segments and the dot
	// between them: the bytes the signature covers (RFC 7515 §5.2).
	signingInput string
}

// checkCompactShape checks what needs no decoding: three non-empty segments
// separated by two dots. [Authenticator.Verify] runs it before hashing the
// token for the cache, so that structural garbage (a stripped signature, a
// JWE, a truncated token) costs neither a SHA-256 nor a cache lookup.
func checkCompactShape(raw string) (dot1, dot2 int, err error) {
	dot1 = strings.IndexByte(raw, '.')
	if dot1 < 0 {
		return 0, 0, fmt.Errorf("%w: not a three-part compact JWS", ErrTokenMalformed)
	}
	dot2 = strings.IndexByte(raw[dot1+1:], '.')
	if dot2 < 0 || strings.IndexByte(raw[dot1+1+dot2+1:], '.') >= 0 {
		return 0, 0, fmt.Errorf("%w: not a three-part compact JWS", ErrTokenMalformed)
	}
	dot2 += dot1 + 1
	if dot1 == 0 || dot2 == dot1+1 || dot2 == len(raw)-1 {
		return 0, 0, fmt.Errorf("%w: empty JWS segment", ErrTokenMalformed)
	}
	return dot1, dot2, nil
}

// splitCompact checks that raw is a JWS in the compact serialization Entra
// issues — three non-empty base64url segments, no padding, no whitespace, no
// non-canonical trailing bits — and decodes its segments, all three into one
// allocation.
//
// go-jose is lenient on all of these (it strips whitespace, accepts the JSON
// serialization and decodes base64 loosely), which would give one token many
// spellings: many verified-token cache keys for one token, and a way around
// any deny list keyed on the token string.
func splitCompact(raw string) (compactJWS, error) {
	dot1, dot2, err := checkCompactShape(raw)
	if err != nil {
		return compactJWS{}, err
	}
	// The strict decoder refuses every byte outside the alphabet and '='
	// padding, but skips CR and LF: those are refused here.
	if strings.IndexByte(raw, '\n') >= 0 || strings.IndexByte(raw, '\r') >= 0 {
		return compactJWS{}, fmt.Errorf("%w: JWS segment outside the base64url alphabet", ErrTokenMalformed)
	}
	segs := [3]string{raw[:dot1], raw[dot1+1 : dot2], raw[dot2+1:]}
	buf := make([]byte, strictB64.DecodedLen(len(segs[0]))+strictB64.DecodedLen(len(segs[1]))+strictB64.DecodedLen(len(segs[2])))
	var out [3][]byte
	for i, seg := range segs {
		n, err := strictB64.Decode(buf, stringBytes(seg))
		if err != nil {
			return compactJWS{}, fmt.Errorf("%w: JWS segment is not canonical base64url", ErrTokenMalformed)
		}
		out[i], buf = buf[:n:n], buf[n:]
	}
	return compactJWS{header: out[0], payload: out[1], signature: out[2], signingInput: raw[:dot2]}, nil
}

// stringBytes views s as bytes without copying it, for functions that read
// their []byte argument and neither keep nor modify it (base64 decoding,
// hashing): a token is 1–16 KiB, and copying it would cost an allocation.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// jwsHeader is what the verification reads from a JOSE header.
type jwsHeader struct {
	alg string
	kid string
}

// refusedHeaderParams are JOSE header parameters no Entra token carries and
// whose meaning the verification would have to honour: crit and b64 (RFC
// 7515 §4.1.11, RFC 7797) change how the token must be processed, jku, jwk,
// x5u and x5c (RFC 7515 §4.1.2–4.1.6) name or embed a key — the signing key
// comes from the issuer's JWKS and from nowhere else.
var refusedHeaderParams = []string{"crit", "b64", "jku", "jwk", "x5u", "x5c"}

// decodeHeader decodes a JOSE header and checks it, in go-jose's order:
//
//   - a JSON object with no duplicate member ([members]), else
//     [ErrTokenMalformed];
//   - alg one of algs (an alg that is absent or not a string is none of
//     them), else [ErrTokenBadSignature];
//   - kid a non-empty string, and nonce, when present, a string, else
//     [ErrTokenMalformed];
//   - none of [refusedHeaderParams], else [ErrTokenBadSignature].
//
// Member names are matched exactly, as JOSE specifies and go-jose does:
// "ALG" is not alg. A name that differs from another only by case is
// refused as a duplicate all the same.
func decodeHeader(b []byte, algs []jose.SignatureAlgorithm) (jwsHeader, error) {
	var h jwsHeader
	var typeErr error
	refused := ""
	m := members{obj: b}
	for m.next() {
		switch m.name {
		case "alg":
			h.alg, _ = m.str() // not a string: no alg, refused below
		case "kid":
			if s, ok := m.str(); ok {
				h.kid = s
			} else if !isNull(m.value) {
				typeErr = errors.New("kid is not a string")
			}
		case "nonce":
			if _, ok := m.str(); !ok && !isNull(m.value) {
				typeErr = errors.New("nonce is not a string")
			}
		default:
			if i := slices.Index(refusedHeaderParams, m.name); i >= 0 && refused == "" {
				refused = refusedHeaderParams[i]
			}
		}
	}
	switch {
	case m.err != nil:
		return jwsHeader{}, fmt.Errorf("%w: header: %v", ErrTokenMalformed, m.err)
	case !slices.Contains(algs, jose.SignatureAlgorithm(h.alg)):
		return jwsHeader{}, fmt.Errorf("%w: algorithm %.20q is not accepted", ErrTokenBadSignature, h.alg)
	case typeErr != nil:
		return jwsHeader{}, fmt.Errorf("%w: header: %v", ErrTokenMalformed, typeErr)
	case h.kid == "":
		return jwsHeader{}, fmt.Errorf("%w: no kid in header", ErrTokenMalformed)
	case refused != "":
		return jwsHeader{}, fmt.Errorf("%w: header parameter %q is not accepted", ErrTokenBadSignature, refused)
	}
	return h, nil
}

// isNull reports whether the raw JSON value v is null.
func isNull(v []byte) bool { return string(v) == "null" }
