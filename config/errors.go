package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a config: where it is and what is wrong. Parse
// and Validate return them joined with errors.Join; reach them with
// errors.As or by unwrapping.
type Error struct {
	File    string // the name given to Parse; "" for a Config built in Go
	Line    int    // 1-based; 0 when the key is not written in the file
	Path    string // key path such as routes[1].upstream; "" for the whole file
	Message string
}

// Error formats e as "FILE:LINE: PATH: MESSAGE", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// problem is a finding before it is placed in the file.
type problem struct {
	path, msg string
}

// problems collects findings in the order they are made.
type problems []problem

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, problem{path, fmt.Sprintf(format, args...)})
}

// source remembers where each key path of a Config came from, so that a
// problem found after decoding still names its file and line.
type source struct {
	name string
	keys map[string]position // key path -> where the file writes it
	env  map[string]string   // key path -> the variable that overrode it
}

type position struct {
	line int
	null bool // written as null, or not decodable: counts as absent
}

func newSource(name string) *source {
	return &source{name: name, keys: map[string]position{}, env: map[string]string{}}
}

// has reports whether the file gives path a value (not null). Defaults
// fill only the keys for which has is false.
func (s *source) has(path string) bool {
	if s == nil {
		return false
	}
	w, ok := s.keys[path]
	return ok && !w.null
}

// locate turns a problem into an Error. A path overridden by the
// environment has no line and names the variable; a path not written in
// the file takes the line of its nearest written ancestor.
func (s *source) locate(p problem) *Error {
	if s == nil {
		return &Error{Path: p.path, Message: p.msg}
	}
	e := &Error{File: s.name, Path: p.path, Message: p.msg}
	if v, ok := s.env[p.path]; ok {
		e.Message += " (from " + v + ")"
		return e
	}
	for path := p.path; path != ""; path = parent(path) {
		if w, ok := s.keys[path]; ok {
			e.Line = w.line
			break
		}
	}
	return e
}

// parent strips the last element of a key path: routes[1].upstream ->
// routes[1] -> routes -> "".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// child is the path of key inside the mapping at path. Keys that would
// read ambiguously are quoted: rate_limits.tiers["gold tier"].
func child(path, key string) string {
	if !plainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func plainKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// item is the path of element i of the list at path.
func item(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// join orders errs by line, those without a line last, and joins them;
// nil when there are none.
func join(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
