// Command pimguard puts live Microsoft Entra PIM enforcement in front of any
// HTTP service, whatever it is written in:
//
//	pimguard serve -config pimguard.yaml
//	    a forward-auth server: GET /auth for nginx auth_request, Traefik
//	    forwardAuth and Caddy forward_auth; /ext-authz/… for Envoy's HTTP
//	    ext_authz; /healthz, /readyz and /metrics beside them.
//	pimguard proxy -config pimguard.yaml -upstream http://127.0.0.1:9000
//	    the same rules as a reverse proxy, for a service with no proxy in
//	    front.
//	pimguard check -config pimguard.yaml -user jane@contoso.com
//	    the user's live state as Graph reports it now, and what each rule
//	    would decide: for "why was I denied?".
//
// The configuration file (YAML) is validated before anything starts: a
// mistake stops the program with the file, line and reason. Secrets come
// from the environment: PIMGUARD_SHARED_KEY (fleet mode) and the Azure
// SDK's variables for Graph (AZURE_CLIENT_ID, AZURE_TENANT_ID,
// AZURE_FEDERATED_TOKEN_FILE or AZURE_CLIENT_SECRET, or a managed identity).
// See README.md, "pimguard in front of any service".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pimguard/pimguard/cmd/pimguard/internal/config"
	"github.com/pimguard/pimguard/internal/syncio"
	"github.com/pimguard/pimguard/middleware"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage:
  pimguard serve -config pimguard.yaml [-listen addr]
  pimguard proxy -config pimguard.yaml -upstream http://127.0.0.1:9000 [-listen addr]
  pimguard check -config pimguard.yaml -user <object ID | userPrincipalName>
`

// run is main without the process: tests call it directly. Exit codes: 0
// after a clean stop, 1 for a failure at run time, 2 for a usage or
// configuration error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	stderr = &syncio.Writer{W: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("pimguard "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "pimguard.yaml", "the configuration file")
	listen := fs.String("listen", "", "listen address (overrides the file's listen)")
	var upstream, user *string
	switch cmd {
	case "serve":
	case "proxy":
		upstream = fs.String("upstream", "", "the service to proxy to, e.g. http://127.0.0.1:9000 (required)")
	case "check":
		user = fs.String("user", "", "the user: object ID or userPrincipalName (required)")
	default:
		fmt.Fprintf(stderr, "pimguard: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pimguard %s: unexpected arguments %q\n", cmd, fs.Args())
		return 2
	}
	f, err := config.Load(*configPath, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "pimguard: configuration:\n%v\n", err)
		return 2
	}
	if *listen != "" {
		f.Listen = *listen
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "check":
		if *user == "" {
			fmt.Fprintln(stderr, "pimguard check: -user is required")
			return 2
		}
		return check(ctx, f, *user, stdout, stderr)
	case "proxy":
		u, err := url.Parse(*upstream)
		if *upstream == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fmt.Fprintf(stderr, "pimguard proxy: -upstream %q is not an http(s) URL such as http://127.0.0.1:9000\n", *upstream)
			return 2
		}
		return serveStack(ctx, f, logger, stderr, u)
	default:
		return serveStack(ctx, f, logger, stderr, nil)
	}
}

// serveStack runs the forward-auth server, or with upstream the reverse
// proxy, until ctx is done.
func serveStack(ctx context.Context, f *config.File, logger *slog.Logger, stderr io.Writer, upstream *url.URL) int {
	s, err := newStack(ctx, f, logger)
	if err != nil {
		fmt.Fprintln(stderr, "pimguard: startup:", err)
		return 1
	}
	defer func() {
		if err := s.Close(); err != nil {
			logger.Warn("pimguard: closing", "err", err)
		}
	}()
	ready := middleware.ReadyHandler(s.auth, s.guard)
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	admin.Handle("GET /readyz", ready)
	admin.Handle("GET /metrics", s.metrics.Handler)
	var h http.Handler
	mode := "serve"
	if upstream == nil {
		// Only proxies reach this listener: pimguard's own endpoints sit
		// beside /auth and the Envoy prefix. (Not one ServeMux for all:
		// it would redirect an unclean path before the Server refuses it.)
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				admin.ServeHTTP(w, r)
			default:
				s.server.ServeHTTP(w, r)
			}
		})
	} else {
		// Every path of this listener belongs to the upstream; pimguard's
		// own endpoints are on admin-listen only.
		proxy, err := s.server.Proxy(upstream)
		if err != nil {
			fmt.Fprintln(stderr, "pimguard: startup:", err)
			return 1
		}
		mode, h = "proxy", proxy
	}
	servers := []*namedServer{{name: "listen", addr: f.Listen, handler: h}}
	if f.AdminListen != "" {
		servers = append(servers, &namedServer{name: "admin-listen", addr: f.AdminListen, handler: admin})
	}
	for _, ns := range servers {
		if ns.ln, err = net.Listen("tcp", ns.addr); err != nil {
			fmt.Fprintf(stderr, "pimguard: %s: %v\n", ns.name, err)
			return 1
		}
	}
	attrs := []any{"mode", mode, "addr", servers[0].ln.Addr().String(), "rules", len(f.Rules), "config", f.Path}
	if upstream != nil {
		attrs = append(attrs, "upstream", upstream.Redacted())
	}
	if len(servers) > 1 {
		attrs = append(attrs, "admin_addr", servers[1].ln.Addr().String())
	}
	logger.Info("pimguard: serving", attrs...)
	errc := make(chan error, len(servers))
	for _, ns := range servers {
		ns.srv = &http.Server{
			Handler:           ns.handler,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		go func() { errc <- ns.srv.Serve(ns.ln) }()
	}
	code := 0
	select {
	case err := <-errc:
		fmt.Fprintln(stderr, "pimguard: serve:", err)
		code = 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ns := range servers {
		if err := ns.srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("pimguard: shutdown", "listener", ns.name, "err", err)
		}
	}
	logger.Info("pimguard: stopped")
	return code
}

// namedServer is one of the listeners serveStack runs.
type namedServer struct {
	name, addr string
	handler    http.Handler
	ln         net.Listener
	srv        *http.Server
}
