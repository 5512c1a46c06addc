package redistest

import (
	"crypto/tls"
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

func TestStartTLS(t *testing.T) {
	s, f := StartTLS(t)
	if !strings.HasPrefix(s.URL(), "rediss://127.0.0.1:") {
		t.Errorf("URL: got %q, want rediss://127.0.0.1:port", s.URL())
	}
	if got, err := s.command("PING"); err != nil || got != "+PONG" {
		t.Fatalf("PING over TLS with the client certificate: got %q, %v", got, err)
	}
	if _, err := command(s.Addr(), "PING"); err == nil {
		t.Errorf("PING in plain text: got an answer, want none (TLS only)")
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: f.pool}
	if got, err := commandTLS(s.Addr(), noCert, "", "PING"); err == nil {
		t.Errorf("PING over TLS without a client certificate: got %q, want a refusal", got)
	}
}

func TestStartSentinelAuth(t *testing.T) {
	s := StartSentinelAuth(t, "data-pw", "sentinel-pw")
	for _, srv := range []*Server{s.Primary, s.Replica, s.Sentinel} {
		if got, _ := command(srv.Addr(), "PING"); !strings.HasPrefix(got, "-NOAUTH") {
			t.Errorf("%s: PING without AUTH: got %q, want -NOAUTH", srv.Addr(), got)
		}
		if got, err := srv.command("PING"); err != nil || got != "+PONG" {
			t.Errorf("%s: PING after AUTH: got %q, %v, want +PONG", srv.Addr(), got, err)
		}
	}
	if got, err := s.Sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName); err != nil || strings.HasPrefix(got, "-") {
		t.Fatalf("the Sentinel, authenticated: got %q, %v", got, err)
	}
	s.Failover()
}
