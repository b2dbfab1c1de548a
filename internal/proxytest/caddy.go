package proxytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// StartCaddy starts Caddy (caddy run) for t with the Caddyfile caddyfile and
// stops it when t ends.
//
// The Caddyfile's example addresses are replaced by replace (example →
// real address; see [ExampleListen]). StartCaddy adds global options of its
// own — admin endpoint off, automatic HTTPS off, a short shutdown grace
// period — to the Caddyfile's global options block, or in a block of their
// own before the first site when it has none, and keeps HOME and
// XDG_CONFIG_HOME/XDG_DATA_HOME (Caddy's autosave and storage) in a
// temporary directory. It fails t if Caddy does not start (its error in the
// failure), and skips t when caddy is not installed, unless CI=true, where
// it fails t.
//
// Caddy 2.6 listens on every interface at the site address's port, not
// only on the loopback host the address names.
func StartCaddy(t testing.TB, caddyfile string, replace map[string]string) *Proxy {
	t.Helper()
	return start(t, "caddy", caddyfile, replace, launchCaddy)
}

// caddyTestOptions are the global options StartCaddy adds.
var caddyTestOptions = []string{
	"admin off",      // no listener on localhost:2019, which tests would share
	"auto_https off", // no certificates, no redirects, no trust store
	"grace_period 1s",
}

func launchCaddy(bin, dir, caddyfile, _ string) (*exec.Cmd, string, error) {
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(withGlobalOptions(caddyfile, caddyTestOptions)), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
	)
	return cmd, path, nil
}

// withGlobalOptions adds options to the Caddyfile's global options block,
// the first thing in a Caddyfile after comments and blank lines (a line
// "{"), or puts a block of its own at the top when it has none. The result
// stays as `caddy fmt` would write it, so that Caddy warns only about the
// user's own formatting.
func withGlobalOptions(caddyfile string, options []string) string {
	var block strings.Builder
	for _, o := range options {
		block.WriteString("\t" + o + "\n")
	}
	lines := strings.SplitAfter(caddyfile, "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if trimmed == "{" {
			return strings.Join(lines[:i+1], "") + block.String() + strings.Join(lines[i+1:], "")
		}
		break
	}
	return "{\n" + block.String() + "}\n\n" + caddyfile
}
