package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Rate is a number of events per period, written "COUNT/PERIOD": "600/m"
// is Rate{Count: 600, Per: time.Minute}. PERIOD is s, m or h, or a
// duration in whole seconds such as 10s ("100/10s").
type Rate struct {
	Count int           // events per Per, 1 to MaxCount
	Per   time.Duration // whole seconds, at least one
}

const rateHint = "use 600/m, 10/s, 5000/h"

// MaxCount bounds a rate's count and a burst: the largest Integer of HTTP
// Structured Fields (RFC 9651 §3.3.1), in which the RateLimit-Policy and
// RateLimit fields carry them.
const MaxCount = 999_999_999_999_999

// ParseRate parses a rate as written in rate_limits.
func ParseRate(s string) (Rate, error) {
	count, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q is not a rate: missing /unit (%s)", s, rateHint)
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil {
		return Rate{}, fmt.Errorf("%q is not a rate: %q is not a whole number (%s)", s, count, rateHint)
	}
	if n < 1 {
		return Rate{}, fmt.Errorf("%q is not a rate: the count must be at least 1", s)
	}
	if n > MaxCount {
		return Rate{}, fmt.Errorf("%q is not a rate: the count must be at most %d", s, MaxCount)
	}
	d, err := parsePer(strings.TrimSpace(per))
	if err != nil {
		return Rate{}, fmt.Errorf("%q is not a rate: %v (%s)", s, err, rateHint)
	}
	return Rate{Count: n, Per: d}, nil
}

func parsePer(s string) (time.Duration, error) {
	switch s {
	case "s":
		return time.Second, nil
	case "m":
		return time.Minute, nil
	case "h":
		return time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("unknown unit %q", s)
	}
	if d < time.Second || d%time.Second != 0 {
		return 0, fmt.Errorf("the period %q must be a whole number of seconds, at least 1s", s)
	}
	return d, nil
}

// String writes r as ParseRate reads it: "600/m", "100/10s". The zero
// Rate is "".
func (r Rate) String() string {
	if r == (Rate{}) {
		return ""
	}
	var per string
	switch r.Per {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "m"
	case time.Hour:
		per = "h"
	default:
		per = Duration(r.Per).String()
	}
	return strconv.Itoa(r.Count) + "/" + per
}

// PerSecond is the refill rate in events per second; 0 for the zero Rate.
func (r Rate) PerSecond() float64 {
	if r.Per <= 0 {
		return 0
	}
	return float64(r.Count) / r.Per.Seconds()
}

// MarshalText writes r as String does, for JSON and YAML dumps.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses as ParseRate does.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// UnmarshalYAML parses a scalar as ParseRate does.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a rate such as 600/m, got %s", describe(n))
	}
	return r.UnmarshalText([]byte(n.Value))
}
