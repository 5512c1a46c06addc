package config

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// readDocument parses data into its one YAML document's root node; nil
// when the file is empty, only comments, or null. The error, if any, is a
// single *Error with the line of the syntax problem.
func readDocument(name string, data []byte) (*yaml.Node, error) {
	if e := checkText(name, data); e != nil {
		return nil, e
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return nil, nil
	} else if err != nil {
		return nil, syntaxError(name, data, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, syntaxError(name, data, err)
		}
		return nil, &Error{File: name, Line: next.Line, Message: "a second YAML document; a config is one document"}
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, nil
	}
	return doc.Content[0], nil
}

// checkText rejects what the YAML reader would reject without a line:
// invalid UTF-8 and control characters.
func checkText(name string, data []byte) *Error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		switch {
		case r == utf8.RuneError && size == 1:
			return &Error{File: name, Line: line, Message: "invalid UTF-8; a config must be UTF-8 text"}
		case r == '\n':
			line++
		case r < 0x20 && r != '\t' && r != '\r', r == 0x7f, r >= 0x80 && r < 0xa0 && r != 0x85, r == 0xfeff, r == 0xfffe, r == 0xffff:
			return &Error{File: name, Line: line, Message: fmt.Sprintf("control character %U is not allowed", r)}
		}
		data = data[size:]
	}
	return nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the problems yaml.v3 reports from its parser (as
// opposed to its scanner). It prints a parser problem's line 0-based, and
// any problem on the first line without a line at all.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

var unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)

// syntaxError turns a yaml.v3 parse error into an *Error with a 1-based line.
func syntaxError(name string, data []byte, err error) *Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			line++
		}
		return &Error{File: name, Line: line, Message: m[2]}
	}
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		e := &Error{File: name, Message: fmt.Sprintf("alias *%s names no anchor (&%s) above it", m[1], m[1])}
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			e.Line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
		return e
	}
	return &Error{File: name, Line: 1, Message: strings.TrimPrefix(msg, "yaml: ")}
}
