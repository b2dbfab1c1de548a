package redistest_test

import (
	"testing"

	"github.com/pimguard/pimguard/internal/redistest"
)

func TestStartKillRestart(t *testing.T) {
	s := redistest.Start(t)
	if !redistest.Ping(s.Addr()) {
		t.Fatal("no answer after Start")
	}
	s.Kill()
	if redistest.Ping(s.Addr()) {
		t.Fatal("still answering after Kill")
	}
	s.Restart()
	if !redistest.Ping(s.Addr()) {
		t.Fatal("no answer after Restart")
	}
}
