package proxytest

import (
	"errors"
	"strings"
	"testing"
)

// TestBrokenConfigFails: a configuration the proxy rejects makes the start
// fail with the proxy's own message, not with a timeout.
func TestBrokenConfigFails(t *testing.T) {
	tests := []struct {
		name   string
		conf   string
		launch launcher
		want   string
	}{
		{"nginx", "server {\n    listen " + ExampleListen + ";\n    bogus_directive on;\n}\n",
			launchNginx, `unknown directive "bogus_directive"`},
		{"caddy", "http://" + ExampleListen + " {\n\tbogus_directive on\n}\n",
			launchCaddy, "unrecognized directive: bogus_directive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := binary(t, tt.name)
			listen := FreeAddr(t)
			conf, err := rewrite(tt.conf, map[string]string{ExampleListen: listen})
			if err != nil {
				t.Fatal(err)
			}
			p, err := run(t, tt.name, bin, conf, listen, tt.launch)
			if err == nil {
				p.Stop()
				t.Fatalf("%s started with a broken configuration", tt.name)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not carry %s's message %q", err, tt.name, tt.want)
			}
			if errors.Is(err, errAddrInUse) {
				t.Fatalf("a broken configuration was taken for a lost port: %v", err)
			}
		})
	}
}

func TestRewrite(t *testing.T) {
	conf := "listen 127.0.0.1:8080; pass 127.0.0.1:8081; up 127.0.0.1:9000;"
	tests := []struct {
		name    string
		replace map[string]string
		want    string
		wantErr string
	}{
		{"all mapped",
			map[string]string{ExampleListen: "127.0.0.1:1", ExamplePimguard: "127.0.0.1:2", ExampleUpstream: "127.0.0.1:3"},
			"listen 127.0.0.1:1; pass 127.0.0.1:2; up 127.0.0.1:3;", ""},
		{"replacement is not replaced again", // 8081 → 9000, 9000 → 8081
			map[string]string{ExampleListen: "127.0.0.1:1", ExamplePimguard: ExampleUpstream, ExampleUpstream: ExamplePimguard},
			"listen 127.0.0.1:1; pass 127.0.0.1:9000; up 127.0.0.1:8081;", ""},
		{"example left unmapped",
			map[string]string{ExampleListen: "127.0.0.1:1", ExampleUpstream: "127.0.0.1:3"},
			"", "does not map"},
		{"mapped address missing from the configuration",
			map[string]string{ExampleListen: "127.0.0.1:1", ExamplePimguard: "127.0.0.1:2", ExampleUpstream: "127.0.0.1:3", "10.0.0.1:80": "127.0.0.1:4"},
			"", "does not contain the address 10.0.0.1:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rewrite(conf, tt.replace)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestWithGlobalOptions(t *testing.T) {
	opts := []string{"admin off", "auto_https off"}
	tests := []struct {
		name, in, want string
	}{
		{"no global block",
			"# comment\n\n:80 {\n}\n",
			"{\n\tadmin off\n\tauto_https off\n}\n\n# comment\n\n:80 {\n}\n"},
		{"global block after comments",
			"# comment\n{\n\tdebug\n}\n\n:80 {\n}\n",
			"# comment\n{\n\tadmin off\n\tauto_https off\n\tdebug\n}\n\n:80 {\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withGlobalOptions(tt.in, opts); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
