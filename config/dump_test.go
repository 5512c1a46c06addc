package config

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDumpRoundTrip dumps each valid golden Config as YAML and parses the
// dump: a compiled config must read back as itself, with Duration, Rate
// and Prefix written in their text forms.
func TestDumpRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid goldens: %v", err)
	}
	for _, file := range files {
		t.Run("ok/"+filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse("in.yaml", data, goldenEnv)
			if err != nil {
				t.Fatal(err)
			}
			for _, iss := range c.Issuers {
				if in := iss.Introspection; in != nil {
					in.ClientSecretEnv = "" // its value is in ClientSecret now
				}
			}
			dump, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse("dump.yaml", dump, nil)
			if err != nil {
				t.Fatalf("Parse(dump): got %v, want none; dump:\n%s", err, dump)
			}
			// Compare dumps: yaml.v3 writes nil and empty lists alike, as []
			// reads back, and nothing else about them differs.
			again, err := yaml.Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(dump) {
				t.Fatalf("got\n%s\nwant\n%s", again, dump)
			}
		})
	}
}
