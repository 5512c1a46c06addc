package config

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		name, in string
		want     Rate
		wantErr  string // substring
	}{
		{"ok/per-minute", "600/m", Rate{600, time.Minute}, ""},
		{"ok/per-second", "10/s", Rate{10, time.Second}, ""},
		{"ok/per-hour", "5000/h", Rate{5000, time.Hour}, ""},
		{"ok/duration-period", "100/10s", Rate{100, 10 * time.Second}, ""},
		{"ok/compound-period", "7/1m30s", Rate{7, 90 * time.Second}, ""},
		{"ok/spaces", " 5 / m ", Rate{5, time.Minute}, ""},
		{"fail/unknown-unit", "10/x", Rate{}, `"10/x" is not a rate: unknown unit "x"`},
		{"fail/zero", "0/m", Rate{}, `"0/m" is not a rate: the count must be at least 1`},
		{"fail/negative", "-1/m", Rate{}, "the count must be at least 1"},
		{"fail/word", "ten/m", Rate{}, `"ten" is not a whole number`},
		{"fail/no-unit", "10", Rate{}, "missing /unit"},
		{"fail/empty-unit", "10/", Rate{}, `unknown unit ""`},
		{"fail/empty", "", Rate{}, "missing /unit"},
		{"fail/sub-second", "10/500ms", Rate{}, "whole number of seconds"},
		{"fail/fractional-seconds", "10/1500ms", Rate{}, "whole number of seconds"},
		{"fail/negative-period", "10/-1m", Rate{}, "whole number of seconds"},
		{"fail/float", "1.5/s", Rate{}, "not a whole number"},
		{"fail/overflow", "99999999999999999999/s", Rate{}, "not a whole number"},
		{"fail/garbage", "/", Rate{}, "not a whole number"},
		// RateLimit-Policy carries the count as a Structured Field Integer
		// (RFC 9651 §3.3.1): at most 15 digits.
		{"ok/largest", "999999999999999/s", Rate{999999999999999, time.Second}, ""},
		{"fail/too-large-for-ratelimit-policy", "1000000000000000/s", Rate{}, "at most 999999999999999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRate(%q): got error %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRate(%q): got %v, %v, want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestRateString(t *testing.T) {
	tests := []struct {
		name string
		in   Rate
		want string
	}{
		{"ok/minute", Rate{600, time.Minute}, "600/m"},
		{"ok/second", Rate{10, time.Second}, "10/s"},
		{"ok/hour", Rate{5000, time.Hour}, "5000/h"},
		{"ok/ten-seconds", Rate{100, 10 * time.Second}, "100/10s"},
		{"ok/ninety-seconds", Rate{7, 90 * time.Second}, "7/1m30s"},
		{"ok/two-hours", Rate{1, 2 * time.Hour}, "1/2h"},
		{"ok/zero", Rate{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("String: got %q, want %q", got, tt.want)
			}
			if tt.in == (Rate{}) {
				return
			}
			back, err := ParseRate(tt.want)
			if err != nil || back != tt.in {
				t.Fatalf("ParseRate(String()): got %v, %v, want %v", back, err, tt.in)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" means an error
	}{
		{"ok/minutes", "15m", "15m"},
		{"ok/hours", "1h", "1h"},
		{"ok/mixed", "1h30m", "1h30m"},
		{"ok/seconds-to-minutes", "90s", "1m30s"},
		{"ok/millis", "100ms", "100ms"},
		{"ok/zero", "0s", "0s"},
		{"ok/zero-bare", "0", "0s"},
		{"ok/negative", "-5m", "-5m"},
		{"fail/words", "15 minutes", ""},
		{"fail/no-unit", "30", ""},
		{"fail/empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), "is not a duration (use 15m, 30s, 1h)") {
					t.Fatalf("UnmarshalText(%q): got %v, %v, want the duration error", tt.in, d, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalText(%q): got error %v", tt.in, err)
			}
			if got := d.String(); got != tt.want {
				t.Fatalf("String: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" means an error
	}{
		{"ok/cidr", "10.0.0.0/8", "10.0.0.0/8"},
		{"ok/masked", "10.1.2.3/8", "10.0.0.0/8"},
		{"ok/bare-v4", "192.0.2.1", "192.0.2.1/32"},
		{"ok/bare-v6", "2001:db8::1", "2001:db8::1/128"},
		{"ok/v6-cidr", "2001:db8::1/32", "2001:db8::/32"},
		{"ok/mapped-bare", "::ffff:192.0.2.1", "192.0.2.1/32"},
		{"ok/mapped-cidr", "::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"fail/octet", "10.0.0.300", ""},
		{"fail/zone", "fe80::1%eth0", ""},
		{"fail/bits", "10.0.0.0/33", ""},
		{"fail/name", "localhost", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrefix(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParsePrefix(%q): got %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("ParsePrefix(%q): got %v, %v, want %s", tt.in, got, err, tt.want)
			}
		})
	}
	if p, err := ParsePrefix(""); err != nil || p.IsValid() {
		t.Errorf(`ParsePrefix(""): got %v, %v, want the zero Prefix`, p, err)
	}
	p, _ := ParsePrefix("::ffff:192.0.2.1")
	if !p.Contains(netip.MustParseAddr("192.0.2.1")) {
		t.Errorf("Contains(192.0.2.1): got false, want true")
	}
}

// TestTextRoundTrip checks that the JSON form of each value type reads
// back to the same value.
func TestTextRoundTrip(t *testing.T) {
	type values struct {
		D Duration
		R Rate
		P Prefix
	}
	p, _ := ParsePrefix("10.0.0.0/8")
	in := values{Duration(90 * time.Second), Rate{100, 10 * time.Second}, p}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"D":"1m30s","R":"100/10s","P":"10.0.0.0/8"}`; string(b) != want {
		t.Fatalf("Marshal: got %s, want %s", b, want)
	}
	var out values
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("Unmarshal: got %+v, %v, want %+v", out, err, in)
	}
}

// TestBurstFitsRateLimitHeader: the RateLimit field carries the remaining
// requests, up to the burst, as a Structured Field Integer (RFC 9651
// §3.3.1, at most 15 digits); a larger burst is refused at load time.
func TestBurstFitsRateLimitHeader(t *testing.T) {
	for _, tc := range []struct{ name, tier, wantErr string }{
		{"ok/largest", "{rate: 5/m, burst: 999999999999999}", ""},
		{"fail/tier", "{rate: 5/m, burst: 1000000000000000}", "rate_limits.tiers.anonymous.burst: must be at most 999999999999999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte("issuers: [{issuer: https://i.example, audiences: [a]}]\nrate_limits:\n  tiers:\n    anonymous: "+tc.tier+
				"\nroutes: [{name: r, path_prefix: /, upstream: http://u}]\n"), nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
