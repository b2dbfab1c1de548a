package forwardauth

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// isPimguardHeader reports whether name is one of pimguard's headers, also
// when written with underscores (X_Pimguard_Object_Id), which servers that
// map header names CGI-style (HTTP_X_PIMGUARD_OBJECT_ID) read as the same.
func isPimguardHeader(name string) bool {
	return len(name) >= len(HeaderPrefix) && strings.EqualFold(strings.ReplaceAll(name[:len(HeaderPrefix)], "_", "-"), HeaderPrefix)
}

// Proxy returns a reverse proxy to upstream that applies the Server's
// rules itself, for a service with no proxy in front: an allowed request
// is forwarded with the identity headers set (client-sent X-Pimguard-*
// headers, also spelt with underscores, are always removed first, so the upstream can trust them) and
// X-Forwarded-For, -Host and -Proto; a refused one is answered as
// [Server.ForwardAuth] answers it and never reaches upstream. The request
// path is matched as received: the proxy forwards it unchanged.
func (s *Server) Proxy(upstream *url.URL) (http.Handler, error) {
	if upstream == nil || (upstream.Scheme != "http" && upstream.Scheme != "https") || upstream.Host == "" {
		return nil, errors.New("forwardauth: the upstream must be an absolute http or https URL")
	}
	handlers := make([]http.Handler, len(s.rules))
	for i, ru := range s.rules {
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(upstream)
				pr.SetXForwarded()
				for name := range pr.Out.Header {
					if isPimguardHeader(name) {
						delete(pr.Out.Header, name)
					}
				}
				s.setIdentity(pr.Out.Header, pr.In, ru)
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				s.cfg.Logger.LogAttrs(r.Context(), slog.LevelWarn, "pimguard: upstream unreachable",
					slog.String("upstream", upstream.Redacted()), slog.String("error", err.Error()))
				w.WriteHeader(http.StatusBadGateway)
			},
		}
		handlers[i] = s.chain(ru, rp)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.decide(w, r, handlers)
	}), nil
}
