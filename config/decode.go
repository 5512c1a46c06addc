package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds one decode, aliases expanded. A config has a few
// thousand nodes; an alias bomb ("billion laughs") has billions.
const maxNodes = 100_000

// decode checks root against the Config type, records every key's line in
// c.src, and decodes what is well-formed into c. Each problem (unknown
// key, wrong type, bad scalar) is returned with its own line; the values
// involved are left out, so c holds the rest of the file.
func decode(c *Config, root *yaml.Node) []*Error {
	if root == nil {
		return nil
	}
	d := &decoder{src: c.src, active: map[*yaml.Node]bool{}}
	clean := d.value("", root, reflect.TypeFor[Config]())
	if clean != nil {
		if err := clean.Decode(c); err != nil {
			// Unreachable if value checks what yaml.v3 checks; kept so a
			// gap shows up as an error rather than a half-decoded config.
			d.fail("", root.Line, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	return d.errs
}

// decoder walks a YAML tree against a Go type.
type decoder struct {
	src    *source
	errs   []*Error
	nodes  int                 // values and entries visited, aliases expanded
	active map[*yaml.Node]bool // aliases being expanded, to catch cycles
}

// spend counts n more nodes visited at node at, and reports whether the
// walk may go on; past maxNodes it records one problem and stops.
func (d *decoder) spend(n int, at *yaml.Node) bool {
	over := d.nodes > maxNodes
	d.nodes += n
	if d.nodes <= maxNodes {
		return true
	}
	if !over {
		d.fail("", at.Line, fmt.Sprintf("more than %d values, aliases expanded; a config is never that large", maxNodes))
	}
	return false
}

func (d *decoder) fail(path string, line int, msg string) {
	d.errs = append(d.errs, &Error{File: d.src.name, Line: line, Path: path, Message: msg})
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// value checks n against t and returns a node yaml.v3 decodes into t
// without error: aliases expanded, merge keys applied, bad parts left out.
// It returns nil when n is null or unusable (the problem recorded).
func (d *decoder) value(path string, n *yaml.Node, t reflect.Type) *yaml.Node {
	if !d.spend(1, n) {
		return nil
	}
	n, done := d.deref(path, n)
	if n == nil {
		return nil
	}
	defer done()
	if isNull(n) {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := reflect.New(t).Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(path, n.Line, err.Error())
			return nil
		}
		return n
	}
	switch t.Kind() {
	case reflect.Pointer:
		return d.value(path, n, t.Elem())
	case reflect.Struct:
		fields := yamlFields(t)
		return d.mapping(path, n, "a mapping", func(key string) (reflect.Type, bool) {
			f, ok := fields[key]
			return f, ok
		})
	case reflect.Map:
		return d.mapping(path, n, "a mapping of names", func(string) (reflect.Type, bool) { return t.Elem(), true })
	case reflect.Slice:
		return d.sequence(path, n, t.Elem())
	case reflect.String, reflect.Bool, reflect.Int:
		return d.scalar(path, n, t)
	}
	panic("config: no decoder for " + t.String())
}

// deref follows an alias to its anchor; done must be called after the
// anchor's value is walked. A cyclic alias gives nil.
func (d *decoder) deref(path string, n *yaml.Node) (*yaml.Node, func()) {
	if n.Kind != yaml.AliasNode {
		return n, func() {}
	}
	if d.active[n] || n.Alias == nil {
		d.fail(path, n.Line, fmt.Sprintf("alias *%s contains itself", n.Value))
		return nil, nil
	}
	d.active[n] = true
	target, inner := d.deref(path, n.Alias)
	if target == nil {
		delete(d.active, n)
		return nil, nil
	}
	return target, func() { inner(); delete(d.active, n) }
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// plainScalars are the tags whose text yaml.v3 decodes into a string
// unchanged (unlike !!binary, or a custom tag).
var plainScalars = map[string]bool{"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!timestamp": true}

// scalar checks a string, bool or int the way yaml.v3 will decode it,
// except that an int must be written as one (yaml.v3 truncates 1.5 to 1).
func (d *decoder) scalar(path string, n *yaml.Node, t reflect.Type) *yaml.Node {
	want := map[reflect.Kind]string{reflect.String: "a string", reflect.Bool: "true or false", reflect.Int: "a whole number"}[t.Kind()]
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, fmt.Sprintf("expected %s, got %s", want, shown(path, n)))
		return nil
	}
	if t.Kind() == reflect.String && plainScalars[n.ShortTag()] {
		return n // yaml.v3 takes the text as is
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil || t.Kind() == reflect.Int && n.ShortTag() != "!!int" {
		d.fail(path, n.Line, fmt.Sprintf("expected %s, got %s", want, shown(path, n)))
		return nil
	}
	return n
}

func (d *decoder) sequence(path string, n *yaml.Node, elem reflect.Type) *yaml.Node {
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n.Line, "expected a list, got "+shown(path, n))
		return nil
	}
	out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: n.Line}
	for i, it := range n.Content {
		p := item(path, i)
		d.src.keys[p] = position{line: it.Line}
		v := d.value(p, it, elem)
		if v == nil {
			v = zeroNode(elem) // keeps the indexes of the items after it
		}
		if v != nil {
			out.Content = append(out.Content, v)
		}
	}
	return out
}

// zeroNode is a node yaml.v3 decodes into the zero value of t. A null
// node will not do: yaml.v3 drops null items from a list of structs or
// strings. It returns nil for a type with no such node.
func zeroNode(t reflect.Type) *yaml.Node {
	var n *yaml.Node
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice:
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "~"}
	case reflect.Struct:
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	case reflect.String:
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}
	case reflect.Int:
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "0"}
	case reflect.Bool:
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"}
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}
		if reflect.New(t).Interface().(yaml.Unmarshaler).UnmarshalYAML(n) != nil {
			return nil
		}
	}
	return n
}

// mapping checks the entries of n, after merge keys, against lookup,
// which gives the type of a key's value or false for an unknown key.
func (d *decoder) mapping(path string, n *yaml.Node, want string, lookup func(string) (reflect.Type, bool)) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, fmt.Sprintf("expected %s, got %s", want, shown(path, n)))
		return nil
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line}
	for _, e := range d.entries(path, n) {
		p := child(path, e.key)
		t, ok := lookup(e.key)
		if !ok {
			d.fail(p, e.line, "unknown key")
			continue
		}
		v := d.value(p, e.value, t)
		// A null or undecodable value counts as absent: it takes its default.
		d.src.keys[p] = position{line: e.line, null: v == nil}
		if v != nil {
			out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: e.key}, v)
		}
	}
	return out
}

type entry struct {
	key   string
	line  int // of the key
	value *yaml.Node
}

// entries lists a mapping's entries with merge keys ("<<: *base")
// applied: the mapping's own entries in order, then merged ones whose key
// is not yet present, earlier merges first (YAML merge key semantics).
func (d *decoder) entries(path string, n *yaml.Node) []entry {
	if !d.spend(len(n.Content)/2, n) {
		return nil
	}
	var own, merged []entry
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(path, v)...)
			continue
		}
		key, ok := d.key(path, k)
		if !ok {
			continue
		}
		if line, dup := first[key]; dup {
			d.fail(child(path, key), k.Line, fmt.Sprintf("duplicate key; first written on line %d", line))
			continue
		}
		first[key] = k.Line
		own = append(own, entry{key, k.Line, v})
	}
	for _, e := range merged {
		if _, dup := first[e.key]; !dup {
			first[e.key] = e.line
			own = append(own, e)
		}
	}
	return own
}

// merge gives the entries a merge key brings in: from a mapping, or from
// each mapping of a list.
func (d *decoder) merge(path string, v *yaml.Node) []entry {
	if !d.spend(1, v) {
		return nil
	}
	v, done := d.deref(path, v)
	if v == nil {
		return nil
	}
	defer done()
	switch v.Kind {
	case yaml.MappingNode:
		return d.entries(path, v)
	case yaml.SequenceNode:
		var all []entry
		for _, m := range v.Content {
			m, done := d.deref(path, m)
			if m == nil {
				continue
			}
			if m.Kind != yaml.MappingNode {
				d.fail(path, m.Line, "a merge key (<<) takes a mapping or a list of mappings, got "+describe(m))
			} else {
				all = append(all, d.entries(path, m)...)
			}
			done()
		}
		return all
	}
	d.fail(path, v.Line, "a merge key (<<) takes a mapping or a list of mappings, got "+describe(v))
	return nil
}

// key reads a mapping key, which must be a scalar.
func (d *decoder) key(path string, k *yaml.Node) (string, bool) {
	k, done := d.deref(path, k)
	if k == nil {
		return "", false
	}
	defer done()
	if k.Kind != yaml.ScalarNode {
		d.fail(path, k.Line, "a key must be a plain name, got "+describe(k))
		return "", false
	}
	return k.Value, true
}

// yamlFields maps a struct's YAML keys to the types of their fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	return fields
}

// secretSections are the keys that hold secrets or sections with secrets
// in them. A scalar where one of them (or a key under one) expects a
// mapping or a list may be a secret written a level too high, as in
// "redis: redis://:password@host" or "nonce: <the secret>", and is not
// quoted.
var secretSections = []string{"redis", "nonce", "introspection", "client_secret", "password", "secret"}

// shown is describe(n), without the value of a string at or under one of
// the secretSections (a bool or a number is shown: "nonce: true").
func shown(path string, n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		for seg := range strings.SplitSeq(path, ".") {
			seg, _, _ = strings.Cut(seg, "[")
			if slices.Contains(secretSections, seg) {
				return "a string (not shown: it may be a secret)"
			}
		}
	}
	return describe(n)
}

// describe names what a node holds, for type errors: "a list",
// "a mapping", or the quoted scalar.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}
