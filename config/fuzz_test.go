package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes. Parse must not panic or hang,
// and must either return a Config that validates and marshals, or no
// Config and only *Error problems. Seeds: testdata/fuzz/FuzzParse and
// every golden file.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/valid/*.yaml", "testdata/invalid/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data, goldenEnv)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse: got a Config and error %v, want no Config", err)
			}
			list := []error{err}
			if u, ok := err.(interface{ Unwrap() []error }); ok {
				list = u.Unwrap()
			}
			for _, e := range list {
				var pe *Error
				if !errors.As(e, &pe) || pe.Message == "" {
					t.Fatalf("Parse: got problem %T %q, want an *Error with a message", e, e)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("Parse: got neither Config nor error")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate of a parsed Config: got %v, want none", err)
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("json.Marshal: got %v", err)
		}
	})
}
