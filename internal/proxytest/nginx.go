package proxytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// StartNginx starts nginx for t with the configuration in confFile and
// stops it when t ends.
//
// confFile holds what a user puts in nginx's http context (Debian:
// /etc/nginx/conf.d/*.conf): maps, upstreams, servers. Its example
// addresses are replaced by replace (example → real address; see
// [ExampleListen]); StartNginx includes it in a main configuration of its
// own that keeps the pid file, temporary files and logs in a temporary
// directory and runs nginx in the foreground with one worker. It fails t if
// nginx does not start (its error message in the failure), and skips t when
// nginx is not installed, unless CI=true, where it fails t.
func StartNginx(t testing.TB, confFile string, replace map[string]string) *Proxy {
	t.Helper()
	return start(t, "nginx", confFile, replace, launchNginx)
}

func launchNginx(bin, dir, site, _ string) (*exec.Cmd, string, error) {
	sitePath := filepath.Join(dir, "site.conf")
	if err := os.WriteFile(sitePath, []byte(site), 0o600); err != nil {
		return nil, "", err
	}
	main := mainNginxConf(dir, sitePath, os.Geteuid() == 0)
	mainPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(mainPath, []byte(main), 0o600); err != nil {
		return nil, "", err
	}
	// -e stderr: messages from before the configuration is read (a
	// missing file) go to the test too, not to /var/log/nginx.
	cmd := exec.Command(bin, "-p", dir+"/", "-c", mainPath, "-e", "stderr")
	return cmd, sitePath, nil
}

// mainNginxConf is the main configuration around a user's http-context
// file. Every path nginx writes is in dir: Debian's nginx is built with
// temporary paths under /var/lib/nginx, which a test must not share. As
// root, workers would switch to "nobody", which cannot enter dir (0700).
func mainNginxConf(dir, site string, root bool) string {
	var b strings.Builder
	b.WriteString("# written by internal/proxytest around " + site + "\n")
	if root {
		b.WriteString("user root root;\n")
	}
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events {
    worker_connections 256;
}
http {
    access_log /dev/stderr;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[2]s;
}
`, dir, site)
	return b.String()
}
