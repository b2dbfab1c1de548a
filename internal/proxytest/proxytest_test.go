package proxytest_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pimguard/pimguard/internal/proxytest"
)

// minimal configurations in each proxy's documented form, naming the
// example addresses the harness replaces.
var minimal = []struct {
	name  string
	file  string
	conf  string
	start startFunc
}{
	{"nginx", "site.conf", `
server {
    listen 127.0.0.1:8080;
    location / {
        proxy_set_header X-Via-Proxy nginx;
        proxy_pass http://127.0.0.1:9000;
    }
}
`, proxytest.StartNginx},
	{"caddy", "Caddyfile", `
http://127.0.0.1:8080 {
	reverse_proxy 127.0.0.1:9000 {
		header_up X-Via-Proxy caddy
	}
}
`, proxytest.StartCaddy},
}

// TestStartProxiesToUpstream: a started proxy listens on its Addr, proxies
// to the address that replaced the example upstream, and is gone after
// Stop.
func TestStartProxiesToUpstream(t *testing.T) {
	for _, m := range minimal {
		t.Run(m.name, func(t *testing.T) {
			via := make(chan string, 1)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				via <- r.Header.Get("X-Via-Proxy")
				_, _ = io.WriteString(w, "upstream "+r.URL.Path)
			}))
			t.Cleanup(up.Close)
			conf := filepath.Join(t.TempDir(), m.file)
			if err := os.WriteFile(conf, []byte(m.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			p := m.start(t, conf, map[string]string{proxytest.ExampleUpstream: up.Listener.Addr().String()})

			resp, err := http.Get(p.URL() + "/hello")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "upstream /hello" {
				t.Fatalf("got %d %q, want 200 from the upstream", resp.StatusCode, body)
			}
			if got := <-via; got != m.name {
				t.Errorf("upstream saw X-Via-Proxy %q, want %q", got, m.name)
			}

			p.Stop()
			if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
				c.Close()
				t.Fatalf("%s still accepts connections on %s after Stop", m.name, p.Addr())
			}
			p.Stop() // a second Stop does nothing
		})
	}
}
