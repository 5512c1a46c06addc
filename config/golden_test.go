package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden .json and .err files in testdata")

// goldenEnv is the environment every golden file is parsed with.
func goldenEnv(name string) string {
	return map[string]string{"INTROSPECT_SECRET": "s3cr3t-from-env"}[name]
}

// TestGolden parses testdata/valid/*.yaml, comparing the Config as JSON
// with the .json beside it, and testdata/invalid/*.yaml, comparing the
// error text with the .err beside it. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	for _, kind := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", kind, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no testdata/%s/*.yaml: %v", kind, err)
		}
		for _, file := range files {
			name := filepath.Base(file)
			prefix := map[string]string{"valid": "ok/", "invalid": "fail/"}[kind]
			t.Run(prefix+strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				c, err := Parse(name, data, goldenEnv)
				var got []byte
				var golden string
				if kind == "valid" {
					golden = strings.TrimSuffix(file, ".yaml") + ".json"
					if err != nil {
						t.Fatalf("Parse: got error\n%v\nwant none", err)
					}
					got, err = json.MarshalIndent(c, "", "  ")
					if err != nil {
						t.Fatal(err)
					}
				} else {
					golden = strings.TrimSuffix(file, ".yaml") + ".err"
					if err == nil {
						t.Fatalf("Parse: got no error, want one")
					}
					if c != nil {
						t.Errorf("Parse: got a Config with the error, want nil")
					}
					got = []byte(err.Error())
				}
				got = append(got, '\n')
				if *update {
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("got\n%s\nwant (%s)\n%s", got, golden, want)
				}
			})
		}
	}
}
