// Package measure times a function the way pimguard's ratio benchmarks do:
// side by side in one run, so that what they report is a ratio against a
// baseline measured on the same machine at the same moment.
package measure

import (
	"runtime"
	"time"
)

// Measurement is a per-call average.
type Measurement struct {
	NS, Allocs, Bytes float64
}

// For calls f(0), f(1), … for at least d, doubling the count until it
// does, and returns per-call averages of the last round.
func For(d time.Duration, f func(i int)) Measurement {
	for n := 1; ; n *= 2 {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		for i := range n {
			f(i)
		}
		elapsed := time.Since(start)
		runtime.ReadMemStats(&m1)
		if elapsed >= d {
			f := float64(n)
			return Measurement{
				NS:     float64(elapsed.Nanoseconds()) / f,
				Allocs: float64(m1.Mallocs-m0.Mallocs) / f,
				Bytes:  float64(m1.TotalAlloc-m0.TotalAlloc) / f,
			}
		}
	}
}
