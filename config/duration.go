package config

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as Go writes one: "15m", "30s",
// "100ms", "1h30m". A bare number ("30") has no unit and is an error.
// Convert with time.Duration(d).
type Duration time.Duration

// String is the shortest Go form: "15m" rather than "15m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText writes d as String does, for JSON and YAML dumps.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use 15m, 30s, 1h)", b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML parses a scalar as UnmarshalText does.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 15m, got %s", describe(n))
	}
	return d.UnmarshalText([]byte(n.Value))
}
