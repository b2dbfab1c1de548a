// Package forwardauth puts pimguard in front of services that are not Go
// handlers: a helpdesk tool in Python, a vendor's admin UI. A [Server]
// holds an ordered list of [Rule]s — a net/http.ServeMux pattern and what it
// requires — and decides, with a middleware.Authenticator and a
// middleware.Guard, the requests a proxy asks it about:
//
//   - [Server.ForwardAuth] (/auth) for nginx auth_request, Traefik
//     forwardAuth and Caddy forward_auth, which describe the original
//     request in X-Original-* or X-Forwarded-* headers;
//   - [Server.ExtAuthz] for Envoy's HTTP ext_authz service, which sends the
//     original request under a path prefix;
//   - [Server.Proxy], a reverse proxy applying the rules itself, for a
//     service with nothing in front of it.
//
// The first rule whose pattern matches decides; a request no rule matches is
// refused (403 no_rule), so a route added to the service behind is closed
// until a rule names it. Paths that are not clean (., .., //) or that encode
// a slash match no rule: the service behind might read them as another path.
//
// An allowed request is answered 200 with the identity headers
// [HeaderTenantID], [HeaderObjectID], [HeaderRoles] (the roles active now,
// from the live state) and [HeaderRule], for the proxy to copy upstream; a
// refused one with the middleware's status, WWW-Authenticate, Retry-After and
// JSON body, plus [HeaderError] for proxies that drop bodies. The proxy must
// remove client-sent X-Pimguard-* headers before the request reaches the
// service (the documented configurations do; [Server.Proxy] always does), and
// only the proxy may reach the Server: it believes the headers that describe
// the original request.
//
// The package imports neither the Graph SDK nor a Redis client: the Guard's
// Source decides where live state comes from. cmd/pimguard wires it all from
// a YAML file.
package forwardauth
