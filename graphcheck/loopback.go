package graphcheck

import (
	"net"
	"strings"
)

// IsLoopbackHost reports whether host (a URL's Hostname, without port) is
// "localhost" or a loopback IP address (127.0.0.0/8, ::1). pimguard allows
// plain http, and Graph requests without a credential, only there: traffic
// that never leaves the machine, such as a graphtest fake tenant.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
