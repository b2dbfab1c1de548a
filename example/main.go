// Command example is a helpdesk admin API protected by pimguard.
//
// With no tenant configured (no PIMGUARD_TENANT_ID) it runs in demo mode: it
// starts a fake Entra tenant (graphcheck/graphtest) in-process on loopback,
// seeds it, serves the API, plays a scripted walkthrough of the stale-token
// problem and how pimguard closes it, then prints curl commands and serves
// until Ctrl-C. With -walkthrough-only it exits after the walkthrough: 0 when
// every step behaved as described. The demo hands out administrators' tokens
// to anyone who asks, so it starts only when no real-mode variable is set and
// listens on loopback only.
//
// With PIMGUARD_TENANT_ID set it runs against a real tenant; see README.md
// for the variables.
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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pimguard/pimguard/internal/syncio"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	// The logger's handler and the background work (the Authenticator's
	// discovery retries) write to stderr besides run itself.
	stderr = &syncio.Writer{W: stderr}
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	walkthroughOnly := fs.Bool("walkthrough-only", false, "demo mode: run the walkthrough, then exit 0 if every step behaved as described")
	addr := fs.String("addr", "", "listen address (overrides PIMGUARD_ADDR)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "example: configuration:", err)
		return 2
	}
	addrSource := "PIMGUARD_ADDR"
	if *addr != "" {
		cfg.Addr, addrSource = *addr, "-addr"
	}
	if *walkthroughOnly && !cfg.Demo() {
		fmt.Fprintln(stderr, "example: -walkthrough-only needs demo mode (unset PIMGUARD_TENANT_ID)")
		return 2
	}
	if *walkthroughOnly {
		cfg.Addr = "127.0.0.1:0" // never collide with a running instance
	}
	// Checked on the address actually listened on, after every override.
	if err := cfg.checkListenAddr(addrSource); err != nil {
		fmt.Fprintln(stderr, "example: configuration:", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var (
		a    *app
		demo *demoTenant
	)
	if cfg.Demo() {
		demo, err = startDemoTenant(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "example: demo tenant:", err)
			return 1
		}
		defer demo.Close()
		if *walkthroughOnly {
			// The walkthrough's own log lines would drown its timeline.
			logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		}
		a, err = newApp(ctx, demo.appConfig(cfg), logger)
	} else {
		a, err = newApp(ctx, realAppConfig(cfg), logger)
	}
	if err != nil {
		fmt.Fprintln(stderr, "example: startup:", err)
		return 1
	}
	defer func() {
		if err := a.Close(); err != nil {
			logger.Warn("example: closing", "err", err)
		}
	}()
	// A signal during start-up stops the program before it serves. (Real
	// mode fetches the signing keys in the background, so newApp itself
	// may well have returned without noticing.)
	if err := ctx.Err(); err != nil {
		fmt.Fprintln(stderr, "example: startup: interrupted before serving:", err)
		return 1
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "example: %s: %v\n", addrSource, err)
		return 1
	}
	srv := &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	logger.Info("example: listening", "addr", ln.Addr().String(), "demo", cfg.Demo())

	code := 0
	if demo != nil {
		ok := demo.walkthrough(ctx, stdout, base, a)
		if *walkthroughOnly {
			if !ok {
				code = 1
			}
			shutdown(srv, logger)
			return code
		}
		demo.printTryIt(stdout, base)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("example: server failed", "err", err)
			code = 1
		}
	}
	shutdown(srv, logger)
	return code
}

// shutdown stops accepting connections and waits up to 10 s for requests in
// flight.
func shutdown(srv *http.Server, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("example: shutdown", "err", err)
	}
}
