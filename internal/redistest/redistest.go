// Package redistest starts a real redis-server (the Debian package
// redis-server, Redis 7) for tests: on a loopback port, in a temporary
// directory, with persistence off, stopped when the test ends. It imports no
// Redis client, so that any package's tests can use it.
//
// Under CI=true a test that cannot start redis-server fails; elsewhere it is
// skipped with a message saying how to install it. Nothing here mocks Redis.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// InstallHint is what a skipped test says.
const InstallHint = "redis-server not found: install it with `apt-get install -y redis-server` (Debian), or run with CI=true to make this a failure"

// Server is a running redis-server. Its methods are safe for concurrent use.
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	config []string
	tls    bool     // listens with TLS only (StartTLS)
	args   []string // after the configuration file (--sentinel)

	mu     sync.Mutex
	proc   *os.Process
	exited chan error // receives once the running process has exited
}

// Start starts redis-server for t, with config lines added to its
// configuration file (e.g. "requirepass s3cret" or an ACL "user" line), and
// stops it when t ends. It skips t when redis-server is not installed,
// unless CI=true, where it fails t.
func Start(t testing.TB, config ...string) *Server {
	t.Helper()
	return start(t, false, config)
}

// StartTLS is [Start] for a server that accepts only TLS connections, with
// the certificate and key in the PEM files certFile and keyFile, and no
// client certificates. Its URL is rediss://.
func StartTLS(t testing.TB, certFile, keyFile string, config ...string) *Server {
	t.Helper()
	return start(t, true, append([]string{
		"tls-cert-file " + certFile,
		"tls-key-file " + keyFile,
		"tls-auth-clients no",
	}, config...))
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) that
// monitors master under the name masterName, with a quorum of 1, and
// stops it when t ends. Its Addr is what a Sentinel client is given.
func StartSentinel(t testing.TB, masterName string, master *Server) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr())
	s := start(t, false, []string{
		fmt.Sprintf("sentinel monitor %s %s %s 1", masterName, host, port),
		fmt.Sprintf("sentinel down-after-milliseconds %s 5000", masterName),
	}, "--sentinel")
	return s
}

func start(t testing.TB, tls bool, config []string, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redistest: %v (CI=true: .ci/run must install redis-server)", err)
		}
		t.Skip(InstallHint)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), config: config, tls: tls, args: args}
	var lastErr error
	for range 5 { // a free port can be taken between choosing and binding it
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: cannot start redis-server: %v", lastErr)
	return nil
}

// Addr is the server's host:port on 127.0.0.1.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// URL is redis://127.0.0.1:port/0, or rediss:// for a TLS server.
func (s *Server) URL() string {
	if s.tls {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Dir is the server's working directory (its configuration and log).
func (s *Server) Dir() string { return s.dir }

// Kill stops the server at once (SIGKILL), as a crash would, and waits for
// the process to exit. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc = nil
}

// Restart starts a killed server again on the same port, empty (nothing is
// persisted). It fails the test if the server does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for range 50 { // the port can linger for a moment after the kill
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart: %v", err)
}

func (s *Server) start() error {
	conf := filepath.Join(s.dir, "redis.conf")
	listen := fmt.Sprintf("port %d", s.port)
	if s.tls {
		listen = fmt.Sprintf("port 0\ntls-port %d", s.port)
	}
	lines := append([]string{
		"bind 127.0.0.1",
		listen,
		"dir " + s.dir,
		`save ""`,
		"appendonly no",
		"protected-mode yes",
		"daemonize no",
		"logfile " + filepath.Join(s.dir, "redis.log"),
	}, s.config...)
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(s.bin, append([]string{conf}, s.args...)...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited: %v; log: %s", err, s.log())
		default:
		}
		if s.ping() {
			s.mu.Lock()
			s.proc, s.exited = cmd.Process, exited
			s.mu.Unlock()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("redis-server did not answer on %s within 10s; log: %s", s.Addr(), s.log())
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return strings.TrimSpace(string(b))
}

// Ping reports whether the server answers.
func (s *Server) Ping() bool { return s.ping() }

func (s *Server) ping() bool {
	if !s.tls {
		return Ping(s.Addr())
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 200 * time.Millisecond},
		Config: &tls.Config{InsecureSkipVerify: true}} // readiness only: nothing is sent but PING
	c, err := d.Dial("tcp", s.Addr())
	if err != nil {
		return false
	}
	return pingConn(c)
}

// Ping reports whether a Redis server answers on addr without TLS. A
// server that requires a password answers PING with -NOAUTH, which still
// says it is up.
func Ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	return pingConn(c)
}

func pingConn(c net.Conn) bool {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
