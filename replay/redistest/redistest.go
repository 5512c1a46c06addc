// Package redistest runs real redis-server processes for tests: one server,
// a three-master Redis Cluster, or a primary and a replica watched by a
// Sentinel. There is no fake: the tests of the Redis backends talk to the
// binary they will meet in production.
//
// The binaries come from PATH. When redis-server is not there, Start,
// StartCluster and StartSentinel skip the test with a message saying so
// (.ci/run installs it, so CI never skips); StartCluster also needs
// redis-cli.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING, and a
// cluster to reach cluster_state:ok.
const startTimeout = 20 * time.Second

// Server is one redis-server process listening on 127.0.0.1, with no
// persistence (--save "" --appendonly no), in a directory of the test's
// TempDir. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	dir  string
	port int
	conf string      // a config file to start from ("" for none)
	args []string    // extra arguments (cluster mode, replication, TLS)
	tls  *tls.Config // non-nil: the server speaks TLS only, and this is how to reach it
	auth string      // the default user's password, "" for none

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has exited and been reaped
}

// Start starts a redis-server on a free port and waits until it answers
// PING; it is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return startServer(t, &Server{dir: t.TempDir()})
}

// startServer starts s, as its fields say (its directory, a config file
// to start from, extra arguments, TLS, the password that conf or args
// set), on a free port.
func startServer(t testing.TB, s *Server) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH; .ci/run installs it")
	}
	s.t = t
	t.Cleanup(s.Stop)
	// A free port can be taken by someone else between our probe and the
	// server's bind; try a few.
	var err error
	for range 5 {
		s.port = freePort(t)
		if err = s.launch(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", err)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL, or rediss:// for a TLS server.
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// Stop kills the server (SIGKILL, as a crash would) and waits for it to
// exit. Clients see their connections reset and new ones refused. Stopping
// a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pause stops the server's process (SIGSTOP) without closing anything:
// connections are accepted by the kernel and commands are sent, but no
// answer comes, as with a partitioned or overloaded server. Clients wait
// for their timeouts. Resume undoes it; Stop and Restart work on a paused
// server.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT); it answers what was sent
// meanwhile.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Restart stops the server if it runs and starts a new one on the same
// port, with no data (nothing is persisted), and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	// The port was ours a moment ago; the new process may still race the
	// kernel releasing it, so retry for a while.
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.launch()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// launch starts redis-server on s.port and waits for PING to answer.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var args []string
	if s.conf != "" {
		args = append(args, s.conf) // it must come first
	}
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.tls != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
	}
	args = append(args, port...)
	args = append(args,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "redis.log",
	)
	args = append(args, s.args...)
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = s.dir
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		// The one Wait: it reaps the process whether Stop killed it or it
		// died on its own (port taken).
		cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		// The server answering must be ours, not one that took the port
		// before our process could bind it.
		info, err := s.command("INFO", "server")
		if err == nil && strings.Contains(info, "\nprocess_id:"+strconv.Itoa(cmd.Process.Pid)+"\r") {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start; its log: %s", tail(filepath.Join(s.dir, "redis.log")))
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("no answer within %v: %v", startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Cluster is three redis-server masters in cluster mode sharing the 16384
// slots, with no replicas.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts three cluster-enabled servers, joins them with
// redis-cli --cluster create, and waits until every node reports
// cluster_state:ok. The servers are stopped when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH; .ci/run installs it")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli not on PATH; .ci/run installs it (redis-tools)")
	}
	c := &Cluster{}
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The cluster bus gets a free port of its own rather than the
		// default port+10000, which may be taken or out of range.
		c.Servers = append(c.Servers, startServer(t, &Server{dir: dir, args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(freePort(t)),
			"--cluster-node-timeout", "5000",
		}}))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(startTimeout)
	for _, s := range c.Servers {
		for {
			info, err := command(s.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: %s: no cluster_state:ok within %v: %q %v", s.Addr(), startTimeout, info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// Addrs are the masters' host:port addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// command sends one inline command and returns the reply: a simple
// string, error or integer line as is ("+PONG"), a bulk string's contents.
// It is enough for PING and CLUSTER INFO, which is all the helper needs.
func command(addr string, args ...string) (string, error) {
	return commandTLS(addr, nil, "", args...)
}

// command is command on s, over TLS for a TLS server, authenticated for
// one that asks for a password.
func (s *Server) command(args ...string) (string, error) {
	return commandTLS(s.Addr(), s.tls, s.auth, args...)
}

// commandTLS is command over TLS with tc, or plain TCP if tc is nil,
// after AUTH password unless password is "".
func commandTLS(addr string, tc *tls.Config, password string, args ...string) (string, error) {
	d := &net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if tc != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tc)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(conn)
	if password != "" {
		if _, err := fmt.Fprintf(conn, "AUTH %s\r\n", password); err != nil {
			return "", err
		}
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return "", fmt.Errorf("AUTH: %q %v", strings.TrimSpace(line), err)
		}
	}
	if _, err := fmt.Fprintf(conn, "%s\r\n", strings.Join(args, " ")); err != nil {
		return "", err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "$") {
		return line, nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		return line, nil
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// tail returns the last lines of a file, for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// Sentinel is a primary and one replica of it, watched by one Sentinel
// under the name MasterName with a quorum of one, so that a failover
// needs no other Sentinel's vote.
type Sentinel struct {
	Primary, Replica, Sentinel *Server
	MasterName                 string
}

// StartSentinel starts a primary, a replica of it and a Sentinel
// monitoring them, and waits until the replica is in sync and the
// Sentinel knows it. The servers are stopped when the test ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return StartSentinelAuth(t, "", "")
}

// StartSentinelAuth is StartSentinel with passwords: password for the
// primary's and the replica's default user (requirepass; the replica and
// the Sentinel authenticate to them with it), and sentinelPassword for the
// Sentinel's own (its requirepass). "" is none.
func StartSentinelAuth(t testing.TB, password, sentinelPassword string) *Sentinel {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH; .ci/run installs it")
	}
	root := t.TempDir()
	dir := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	s := &Sentinel{MasterName: "dpopgate"}
	var auth []string
	if password != "" {
		auth = []string{"--requirepass", password, "--masterauth", password}
	}
	s.Primary = startServer(t, &Server{dir: dir("primary"), auth: password, args: auth})
	s.Replica = startServer(t, &Server{dir: dir("replica"), auth: password,
		args: append(auth, "--replicaof", "127.0.0.1", strconv.Itoa(s.Primary.port))})
	waitInfo(t, s.Replica, "replication", "master_link_status:up")
	sdir := dir("sentinel")
	conf := filepath.Join(sdir, "sentinel.conf") // the Sentinel rewrites it
	monitor := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\n"+
		"sentinel down-after-milliseconds %[1]s 1000\n"+
		"sentinel failover-timeout %[1]s 10000\n", s.MasterName, s.Primary.port)
	if password != "" {
		monitor += fmt.Sprintf("sentinel auth-pass %s %s\n", s.MasterName, password)
	}
	if sentinelPassword != "" {
		monitor += "requirepass " + sentinelPassword + "\n"
	}
	if err := os.WriteFile(conf, []byte(monitor), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Sentinel = startServer(t, &Server{dir: sdir, conf: conf, auth: sentinelPassword, args: []string{"--sentinel"}})
	waitInfo(t, s.Sentinel, "sentinel", "address="+s.Primary.Addr()+",slaves=1,")
	return s
}

// Failover has the Sentinel promote the replica (SENTINEL FAILOVER), and
// waits until the Sentinel names it as the primary.
func (s *Sentinel) Failover() {
	s.Sentinel.t.Helper()
	// The Sentinel refuses (NOGOODSLAVE) until it has fresh INFO from the
	// replica itself, a few seconds after it first heard of it.
	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := s.Sentinel.command("SENTINEL", "FAILOVER", s.MasterName)
		if err == nil && reply == "+OK" {
			break
		}
		if time.Now().After(deadline) {
			s.Sentinel.t.Fatalf("redistest: SENTINEL FAILOVER: %q %v", reply, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitInfo(s.Sentinel.t, s.Sentinel, "sentinel", "address="+s.Replica.Addr()+",")
	waitInfo(s.Sentinel.t, s.Replica, "replication", "role:master")
}

// waitInfo waits until the INFO section of s contains want.
func waitInfo(t testing.TB, s *Server, section, want string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := s.command("INFO", section)
		if err == nil && strings.Contains(info, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: INFO %s has no %q within %v: %q %v", s.Addr(), section, want, startTimeout, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
