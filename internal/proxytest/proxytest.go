package proxytest

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pimguard/pimguard/internal/syncio"
)

// The example addresses of the documented configurations. A test maps
// each one it uses to a real loopback address; [StartNginx] and
// [StartCaddy] refuse a configuration that still names one afterwards, so
// that a test never talks to whatever listens on the machine's port 8081.
const (
	// ExampleListen is where the documented proxy listens. The harness
	// picks a free loopback address for it unless the test maps it.
	ExampleListen = "127.0.0.1:8080"
	// ExamplePimguard is where the documented proxy finds pimguard serve.
	ExamplePimguard = "127.0.0.1:8081"
	// ExampleUpstream is the documented application behind the proxy.
	ExampleUpstream = "127.0.0.1:9000"
)

// InstallHint is what a skipped test says.
const InstallHint = "nginx or caddy not found: install them with `apt-get install -y nginx caddy` (Debian), or run with CI=true to make this a failure"

// startTimeout bounds how long a proxy may take to accept connections.
const startTimeout = 15 * time.Second

// Proxy is a running nginx or Caddy. Its methods are safe for concurrent
// use.
type Proxy struct {
	name string // "nginx" or "caddy"
	addr string
	dir  string
	conf string

	stderr *syncio.Buffer
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	err    error         // the process's exit status, set before exited is closed

	stopOnce sync.Once
}

// Addr is the proxy's listen address, host:port on 127.0.0.1.
func (p *Proxy) Addr() string { return p.addr }

// URL is http://Addr.
func (p *Proxy) URL() string { return "http://" + p.addr }

// Dir is the proxy's temporary directory: its configuration, temporary
// files and logs.
func (p *Proxy) Dir() string { return p.dir }

// Config is the path of the configuration the proxy runs, after the
// example addresses were replaced.
func (p *Proxy) Config() string { return p.conf }

// Log is what the proxy has written to its standard error so far.
func (p *Proxy) Log() string { return p.stderr.String() }

// Stop stops the proxy (SIGTERM, then SIGKILL to its process group after
// five seconds) and waits for it to exit. Stopping a stopped proxy does
// nothing. Tests need not call it: the proxy is stopped when the test ends.
func (p *Proxy) Stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			// nginx's workers outlive a killed master and keep the port:
			// kill the whole group the harness started.
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
}

// FreeAddr returns a loopback address nothing listens on at the moment of
// the call, such as an address for a server that is down.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// errAddrInUse says the chosen listen port was taken between choosing and
// binding it; the harness then tries another.
var errAddrInUse = errors.New("proxytest: listen address already in use")

// start is what StartNginx and StartCaddy share: find the binary, rewrite
// the configuration, start, retry on a lost port, clean up.
func start(t testing.TB, name string, confFile string, replace map[string]string, launch launcher) *Proxy {
	t.Helper()
	bin := binary(t, name)
	src, err := os.ReadFile(confFile)
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	var lastErr error
	for range 5 { // a free port can be taken between choosing and binding it
		r := maps.Clone(replace)
		if r == nil {
			r = map[string]string{}
		}
		if _, ok := r[ExampleListen]; !ok {
			r[ExampleListen] = FreeAddr(t)
		}
		conf, err := rewrite(string(src), r)
		if err != nil {
			t.Fatalf("proxytest: %s: %v", confFile, err)
		}
		p, err := run(t, name, bin, conf, r[ExampleListen], launch)
		if err == nil {
			return p
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) || replace[ExampleListen] != "" {
			break
		}
	}
	t.Fatalf("proxytest: cannot start %s with %s: %v", name, confFile, lastErr)
	return nil
}

// binary is the path of name's binary. It skips t when there is none,
// unless CI=true, where it fails t.
func binary(t testing.TB, name string) string {
	t.Helper()
	bin, err := lookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("proxytest: %v (CI=true: .ci/run must install %s)", err, name)
		}
		t.Skip(InstallHint)
	}
	return bin
}

// lookPath finds name on PATH or in /usr/sbin, where Debian puts nginx
// and which a non-root PATH often lacks.
func lookPath(name string) (string, error) {
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin, nil
	}
	if alt := filepath.Join("/usr/sbin", name); isExecutable(alt) {
		return alt, nil
	}
	return "", err
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// rewrite replaces the documented example addresses in conf. Every address
// the test maps must occur in conf (else the documentation and the test
// have drifted apart), and no example address may remain unmapped.
func rewrite(conf string, replace map[string]string) (string, error) {
	for _, old := range slices.Sorted(maps.Keys(replace)) {
		if !strings.Contains(conf, old) {
			return "", fmt.Errorf("the configuration does not contain the address %s the test replaces", old)
		}
	}
	// One pass, so that a replacement is never itself replaced.
	var pairs []string
	for _, old := range slices.Sorted(maps.Keys(replace)) {
		pairs = append(pairs, old, replace[old])
	}
	conf = strings.NewReplacer(pairs...).Replace(conf)
	for _, ex := range []string{ExampleListen, ExamplePimguard, ExampleUpstream} {
		if _, mapped := replace[ex]; !mapped && strings.Contains(conf, ex) {
			return "", fmt.Errorf("the configuration names %s, which the test does not map to a real address", ex)
		}
	}
	return conf, nil
}

// launcher writes a proxy's configuration conf (already rewritten) into
// dir and returns the command that runs the proxy in the foreground and
// the path of the file holding conf.
type launcher func(bin, dir, conf, listen string) (*exec.Cmd, string, error)

// run starts a proxy with launch, waits for listen to accept
// connections, and registers the cleanup.
func run(t testing.TB, name, bin, conf, listen string, launch launcher) (*Proxy, error) {
	dir, err := os.MkdirTemp(t.TempDir(), name)
	if err != nil {
		return nil, err
	}
	cmd, confPath, err := launch(bin, dir, conf, listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{name: name, addr: listen, dir: dir, conf: confPath,
		stderr: &syncio.Buffer{}, cmd: cmd, exited: make(chan struct{})}
	cmd.Dir = dir
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // see Stop
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.exited:
			log := strings.TrimSpace(p.Log())
			if strings.Contains(strings.ToLower(log), "address already in use") {
				return nil, fmt.Errorf("%w: %s", errAddrInUse, log)
			}
			return nil, fmt.Errorf("%s exited (%v):\n%s", name, p.err, log)
		default:
		}
		if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s did not accept connections on %s within %v:\n%s", name, listen, startTimeout, p.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("proxytest: %s log (%s):\n%s", name, confPath, p.Log())
		}
	})
	return p, nil
}
