package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestServerLog: net/http's own reports go to the JSON log; a handler's
// panic, a bug, at error level where an operator sees it, and the rest
// (TLS handshakes, clients that hang up) at debug.
func TestServerLog(t *testing.T) {
	var buf bytes.Buffer
	l := serverLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Print("http: panic serving 127.0.0.1:5555: runtime error: index out of range\ngoroutine 7 [running]:\n")
	l.Print("http: TLS handshake error from 127.0.0.1:5556: EOF\n")
	var levels []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		levels = append(levels, rec.Level)
	}
	if strings.Join(levels, ",") != "ERROR,DEBUG" {
		t.Fatalf("got levels %v, want ERROR for the panic and DEBUG for the handshake:\n%s", levels, buf.String())
	}
}
