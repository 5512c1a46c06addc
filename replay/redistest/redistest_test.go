package redistest

import (
	"strings"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if _, err := command(s.Addr(), "SET", "k", "v"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Pause()
	if _, err := command(s.Addr(), "PING"); err == nil {
		t.Fatalf("PING while paused: got an answer, want a timeout")
	}
	s.Resume()
	if got, err := command(s.Addr(), "PING"); err != nil || got != "+PONG" {
		t.Fatalf("PING after Resume: got %q, %v, want +PONG", got, err)
	}
	s.Stop()
	if _, err := command(s.Addr(), "PING"); err == nil {
		t.Fatalf("PING after Stop: got an answer, want a refused connection")
	}
	s.Restart()
	if got, err := command(s.Addr(), "PING"); err != nil || got != "+PONG" {
		t.Fatalf("PING after Restart: got %q, %v, want +PONG", got, err)
	}
	if got, err := command(s.Addr(), "EXISTS", "k"); err != nil || got != ":0" {
		t.Fatalf("EXISTS k after Restart: got %q, %v, want :0 (fresh data)", got, err)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t)
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("Addrs: got %d, want 3", got)
	}
	for _, a := range c.Addrs() {
		info, err := command(a, "CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		if want := "cluster_known_nodes:3"; !strings.Contains(info, want) {
			t.Errorf("%s: CLUSTER INFO lacks %s:\n%s", a, want, info)
		}
	}
}
