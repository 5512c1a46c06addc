package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildBinary compiles dpopgate into a temp dir once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "dpopgate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDevQuickstart runs `dpopgate dev` as a subprocess and then, with
// nothing but the commands it printed (the CLI and curl, no test helpers),
// registers a client, gets a token, calls a route with DPoP, replays the
// proof, and calls anonymously.
func TestDevQuickstart(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not on PATH; .ci/run installs it")
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "dev", "--listen", "127.0.0.1:0", "--issuer-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("dev stderr:\n%s", stderr.String())
		}
	}()

	// Read the banner up to the end of the command block.
	var banner, script strings.Builder
	in := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		banner.WriteString(line + "\n")
		switch {
		case strings.Contains(line, "-- begin commands --"):
			in = true
		case strings.Contains(line, "-- end commands --"):
			in = false
		case in:
			script.WriteString(line + "\n")
		}
		if strings.Contains(line, "-- end commands --") {
			break
		}
	}
	go func() { // keep draining so dev never blocks on a full pipe
		for sc.Scan() {
		}
	}()
	if !strings.Contains(banner.String(), "FOR DEVELOPMENT ONLY") {
		t.Fatalf("the banner does not say it is for development:\n%s", banner.String())
	}
	if script.Len() == 0 {
		t.Fatalf("no commands printed:\n%s", banner.String())
	}

	// Run the printed commands, as printed, in an empty directory.
	run := exec.CommandContext(ctx, "bash", "-e", "-c", script.String())
	run.Dir = t.TempDir()
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed commands failed: %v\n%s\nscript:\n%s", err, out, script.String())
	}
	answers := splitHTTP(string(out))
	if len(answers) != 3 {
		t.Fatalf("got %d HTTP answers, want 3:\n%s", len(answers), out)
	}
	// 1. DPoP call: 200, and the upstream saw the identity, not the credentials.
	if !strings.HasPrefix(answers[0], "HTTP/1.1 200") || !regexp.MustCompile(`"client_id":"dyn-[^"]+"`).MatchString(answers[0]) ||
		!strings.Contains(answers[0], `"credentials_forwarded":false`) || !strings.Contains(answers[0], `"jkt":"`) {
		t.Fatalf("DPoP call: got\n%s\nwant 200 with the registered client's identity upstream", answers[0])
	}
	// 2. The same proof again: refused.
	if !strings.HasPrefix(answers[1], "HTTP/1.1 401") || !strings.Contains(answers[1], `"error":"invalid_dpop_proof"`) {
		t.Fatalf("replay: got\n%s\nwant 401 invalid_dpop_proof", answers[1])
	}
	// 3. Anonymous: 200 with the anonymous budget.
	if !strings.HasPrefix(answers[2], "HTTP/1.1 200") || !strings.Contains(answers[2], "X-Ratelimit-Limit: 60") ||
		!strings.Contains(answers[2], `"tier":"anonymous"`) {
		t.Fatalf("anonymous call: got\n%s\nwant 200 with X-RateLimit-Limit: 60", answers[2])
	}
}

// splitHTTP cuts curl -si output into one string per answer.
func splitHTTP(out string) []string {
	var answers []string
	for _, part := range strings.Split(out, "HTTP/1.1 ")[1:] {
		answers = append(answers, "HTTP/1.1 "+part)
	}
	return answers
}
