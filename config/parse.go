package config

import (
	"os"
)

// Load reads the file at path and parses it as Parse does, naming the file
// path in every problem. getenv may be nil (no environment); pass
// os.Getenv to use the process's.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, getenv)
}

// Parse decodes data strictly, applies environment overrides read through
// getenv (nil means none), fills defaults and validates. name is the file
// name that problems start with. An empty file, or one of only comments,
// is a valid config made of the defaults.
//
// On error, the Config is nil and the error joins every problem found, one
// *Error each, in file order: decode problems (syntax, unknown keys, wrong
// types) and validation problems alike, except that a value which could
// not be decoded is not validated as well.
func Parse(name string, data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	root, err := readDocument(name, data)
	if err != nil {
		return nil, err
	}
	c := &Config{src: newSource(name)}
	errs := decode(c, root)
	errs = append(errs, applyEnv(c, getenv)...)
	errs = append(errs, c.locate(resolveSecrets(c, getenv))...)
	applyDefaults(c)
	bad := map[string]bool{} // paths of values left out by decode
	for _, e := range errs {
		bad[e.Path] = true
	}
	if !bad[""] { // a problem with the whole file makes the rest noise
		for _, p := range c.check() {
			if !repeats(bad, p.path) {
				errs = append(errs, c.src.locate(p))
			}
		}
	}
	if err := join(errs); err != nil {
		return nil, err
	}
	return c, nil
}

// repeats reports whether a problem at path is about a value decode
// already reported and left out: the value at path or one around it.
func repeats(bad map[string]bool, path string) bool {
	for ; path != ""; path = parent(path) {
		if bad[path] {
			return true
		}
	}
	return false
}
