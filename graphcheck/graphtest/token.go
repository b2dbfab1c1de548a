package graphtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DefaultTokenLifetime is the lifetime of minted tokens when [Token.Lifetime]
// is zero: 75 minutes, inside Entra's randomised 60–90 minute range.
const DefaultTokenLifetime = 75 * time.Minute

// Token describes an access token for [Server.Mint]. Only ObjectID is
// required; the zero value of every other field picks an Entra-like default.
type Token struct {
	// TenantID is the tid claim and selects the issuer. Default: the server's
	// first tenant.
	TenantID string
	// Version is the token format, 1 (iss https://sts.windows.net/{tid}/,
	// appid, upn) or 2 (iss {authority}/{tid}/v2.0, azp, preferred_username).
	// Default 2.
	Version int
	// ObjectID is the oid claim: the user's or service principal's object ID.
	ObjectID string
	// Subject is the sub claim. Default: ObjectID for app-only tokens, as
	// Entra sets it; for user tokens a pairwise value derived from ObjectID
	// and AppID.
	Subject string
	// AppID is the calling client application (azp in v2, appid in v1).
	// Default [ClientAppID].
	AppID string
	// Audience is the aud claim. Default [APIClientID] for v2 and
	// [APIAppIDURI] for v1.
	Audience string
	// App makes an app-only token: no scp, idtyp "app", sub equal to oid,
	// no user names.
	App bool
	// Scopes are delegated permissions (scp, space-separated). Default
	// ["access_as_user"] for user tokens, none for app-only tokens.
	Scopes []string
	// Roles are app roles (roles claim).
	Roles []string
	// Wids are directory role template IDs, frozen at issue time.
	Wids []string
	// Groups are group object IDs, frozen at issue time.
	Groups []string
	// Name and Username are the display name and UPN of a user token.
	Name, Username string
	// IssuedAt is iat and nbf. Default: the server clock's now.
	IssuedAt time.Time
	// Lifetime is exp minus iat. Default [DefaultTokenLifetime].
	Lifetime time.Duration
	// Claims are set last and override everything above; a nil value removes
	// the claim.
	Claims map[string]any
}

// Mint signs an access token with the server's current signing key.
func (s *Server) Mint(t Token) (string, error) {
	claims, err := s.Claims(t)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("graphtest: encoding claims: %w", err)
	}
	return s.Sign(nil, payload)
}

// MustMint is like [Server.Mint] but panics on error.
func (s *Server) MustMint(t Token) string {
	tok, err := s.Mint(t)
	if err != nil {
		panic(err)
	}
	return tok
}

// Claims returns the claim set [Server.Mint] would sign for t.
func (s *Server) Claims(t Token) (map[string]any, error) {
	if t.ObjectID == "" {
		return nil, fmt.Errorf("graphtest: Token.ObjectID is required")
	}
	tenant := t.TenantID
	if tenant == "" {
		tenant = s.first
	}
	version := t.Version
	if version == 0 {
		version = 2
	}
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("graphtest: Token.Version must be 1 or 2, got %d", version)
	}
	iat := t.IssuedAt
	if iat.IsZero() {
		iat = s.clock.Now()
	}
	life := t.Lifetime
	if life == 0 {
		life = DefaultTokenLifetime
	}
	appID := t.AppID
	if appID == "" {
		appID = ClientAppID
	}
	aud := t.Audience
	if aud == "" {
		aud = APIClientID
		if version == 1 {
			aud = APIAppIDURI
		}
	}
	sub := t.Subject
	switch {
	case sub != "":
	case t.App:
		sub = t.ObjectID
	default:
		sub = pairwiseSubject(t.ObjectID, appID)
	}
	c := map[string]any{
		"aud": aud,
		"iss": s.Issuer(tenant, version),
		"iat": iat.Unix(),
		"nbf": iat.Unix(),
		"exp": iat.Add(life).Unix(),
		"oid": t.ObjectID,
		"sub": sub,
		"tid": tenant,
		"uti": randomID(),
		"rh":  "0.AAAA" + randomID() + ".",
		"ver": fmt.Sprintf("%d.0", version),
	}
	if version == 1 {
		c["appid"] = appID
		c["appidacr"] = "1"
	} else {
		c["azp"] = appID
		c["azpacr"] = "1"
	}
	if t.App {
		c["idtyp"] = "app"
	} else {
		scopes := t.Scopes
		if scopes == nil {
			scopes = []string{"access_as_user"}
		}
		if len(scopes) > 0 {
			c["scp"] = strings.Join(scopes, " ")
		}
		if t.Name != "" {
			c["name"] = t.Name
		}
		if t.Username != "" {
			if version == 1 {
				c["upn"] = t.Username
				c["unique_name"] = t.Username
			} else {
				c["preferred_username"] = t.Username
			}
		}
	}
	if len(t.Roles) > 0 {
		c["roles"] = t.Roles
	}
	if len(t.Wids) > 0 {
		c["wids"] = t.Wids
	}
	if len(t.Groups) > 0 {
		c["groups"] = t.Groups
	}
	for k, v := range t.Claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c, nil
}

// Sign signs payload as a compact JWS with the current RS256 signing key,
// adding the given header fields (typ "JWT" and kid are set unless header
// overrides them). It lets tests build tokens Mint would never produce.
func (s *Server) Sign(header map[string]any, payload []byte) (string, error) {
	kid, key := s.SigningKey()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	for k, v := range header {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("graphtest: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("graphtest: signing: %w", err)
	}
	return jws.CompactSerialize()
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// pairwiseSubject imitates Entra's pairwise sub: stable per user and app.
func pairwiseSubject(oid, app string) string {
	sum := sha256.Sum256([]byte(oid + "|" + app))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
