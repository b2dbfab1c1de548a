package main

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pimguard/pimguard/internal/proxytest"
)

// TestForwardAuthFigures measures what the forward-auth hop adds: the same
// client drives nginx with the documented configuration (auth_request to
// pimguard serve, warm cache) and nginx proxying to the same upstream with
// no auth (testdata/nginx-noauth.conf), side by side, in alternating rounds,
// and reports requests per second and p50/p99 latency of each and their
// ratios. The README's figures come from
//
//	go test -run TestForwardAuthFigures -v ./cmd/pimguard/
//
// (without -race: under the race detector pimguard, which runs in the test
// process, is several times slower). It asserts only that every request got
// the expected answer.
func TestForwardAuthFigures(t *testing.T) {
	e := newE2E(t, "cache: {ttl: 10m, negative-ttl: 10m}\n")
	withAuth := proxytest.StartNginx(t, "testdata/nginx.conf", map[string]string{proxytest.ExamplePimguard: e.pgAddr, proxytest.ExampleUpstream: e.upAddr})
	plain := proxytest.StartNginx(t, "testdata/nginx-noauth.conf", map[string]string{proxytest.ExampleUpstream: e.upAddr})
	const workers, perRound, rounds = 4, 1000, 3
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	token := e.token(janeOID)
	path := "/api/users/42/reset-password"
	drive := func(base string, n int) ([]time.Duration, time.Duration) {
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		var failed sync.Once
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					req, _ := http.NewRequest("POST", base+path, nil)
					req.Header.Set("Authorization", token)
					t0 := time.Now()
					resp, err := client.Do(req)
					lat[i] = time.Since(t0)
					if err != nil || resp.StatusCode != 200 {
						failed.Do(func() { t.Errorf("%s: %v %v", base, err, resp) })
					}
					if resp != nil {
						_ = resp.Body.Close()
					}
				}
			}()
		}
		wg.Wait()
		return lat, time.Since(start)
	}
	drive(withAuth.URL(), 100) // warm: keys, state, connections
	drive(plain.URL(), 100)
	type result struct {
		lat     []time.Duration
		elapsed time.Duration
	}
	var auth, base result
	for range rounds {
		for _, m := range []struct {
			url string
			r   *result
		}{{withAuth.URL(), &auth}, {plain.URL(), &base}} {
			lat, el := drive(m.url, perRound)
			m.r.lat, m.r.elapsed = append(m.r.lat, lat...), m.r.elapsed+el
			e.upstream.take()
		}
	}
	q := func(lat []time.Duration, p float64) time.Duration {
		s := slices.Clone(lat)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1))]
	}
	rps := func(r result) float64 { return float64(len(r.lat)) / r.elapsed.Seconds() }
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
	t.Logf("%d requests each, %d client workers, keep-alive, warm cache, POST %s (role requirement)", len(auth.lat), workers, path)
	t.Logf("%-28s %10s %10s %10s", "", "req/s", "p50", "p99")
	t.Logf("%-28s %10.0f %10s %10s", "nginx, no auth (baseline)", rps(base), us(q(base.lat, .5)), us(q(base.lat, .99)))
	t.Logf("%-28s %10.0f %10s %10s", "nginx + pimguard auth", rps(auth), us(q(auth.lat, .5)), us(q(auth.lat, .99)))
	t.Logf("ratio auth ÷ baseline: req/s %.2f, p50 %.2f, p99 %.2f; added p50 %s",
		rps(auth)/rps(base), float64(q(auth.lat, .5))/float64(q(base.lat, .5)), float64(q(auth.lat, .99))/float64(q(base.lat, .99)),
		us(q(auth.lat, .5)-q(base.lat, .5)))
}
