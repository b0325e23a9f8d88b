package pluginconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/gpuslice/gpuslice/internal/suggest"

	"go.yaml.in/yaml/v3"
)

// Parse reads a plugin config strictly: YAML syntax, unknown or misspelt
// fields, wrong value types and every rule of Validate. It returns all
// problems at once as ValidationErrors, each with its field path, YAML line
// and fix, and a nil Config when there is any.
func Parse(data []byte) (*Config, error) {
	root, errs := parseDocument(data)
	if errs != nil {
		return nil, errs
	}
	w := walker{idx: nodeIndex{lines: map[string]int{}, covered: map[string]bool{}}}
	w.walk(root, configType, "")

	var c Config
	// The walker has already reported every type problem with its field
	// path; the decoder's own messages are only a fallback should the two
	// ever disagree.
	if err := root.Decode(&c); err != nil && len(w.errs) == 0 {
		w.errs = append(w.errs, FieldError{Line: root.Line, Message: err.Error(), Fix: "correct the value the message names"})
	}
	errs = append(w.errs, w.idx.attach(validate(&c, &w.idx))...)
	if len(errs) > 0 {
		errs.sortByLine()
		return nil, errs
	}
	return &c, nil
}

// parseDocument returns the top-level mapping of the single YAML document in
// data, or the reason there is none.
func parseDocument(data []byte) (*yaml.Node, ValidationErrors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && isEmptyDocument(&doc)) {
		return nil, ValidationErrors{{
			Message: "the config is empty: the plugin would start without any sharing",
			Fix:     "start the file with version: v1 and add a sharing section",
		}}
	}
	if err != nil {
		return nil, ValidationErrors{syntaxError(err, data)}
	}
	// The plugin reads only the first document; anything after "---" would
	// be dropped without a word.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil && !isEmptyDocument(&extra):
		return nil, ValidationErrors{{
			Line:    extra.Content[0].Line,
			Message: "a second YAML document starts here; the plugin reads only the first one",
			Fix:     "remove the extra document, or store it under another key of the ConfigMap",
		}}
	case err != nil && !errors.Is(err, io.EOF):
		return nil, ValidationErrors{syntaxError(err, data)}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, ValidationErrors{{
			Line:    root.Line,
			Message: "the config must be a mapping of fields, got " + describeNode(root),
			Fix:     "start the file with version: v1 followed by sharing:, flags: ...",
		}}
	}
	return root, nil
}

func isEmptyDocument(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || isNull(doc.Content[0])
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML parser error into a FieldError with its line and
// the offending text, and recognises the commonest cause: tab indentation.
func syntaxError(err error, data []byte) FieldError {
	fe := FieldError{
		Message: "YAML syntax error: " + strings.TrimPrefix(err.Error(), "yaml: "),
		Fix:     "check the indentation and that every key is followed by a colon and a space",
	}
	m := yamlLineRe.FindStringSubmatch(err.Error())
	if m == nil {
		return fe
	}
	fe.Line, _ = strconv.Atoi(m[1])
	fe.Message = "YAML syntax error: " + m[2]
	lines := strings.Split(string(data), "\n")
	if fe.Line >= 1 && fe.Line <= len(lines) {
		text := lines[fe.Line-1]
		fe.Message += " in " + quote(strings.TrimSpace(text))
		switch {
		case strings.Contains(text, "\t"):
			fe.Fix = "indent with spaces: YAML does not allow tabs"
		case strings.Contains(m[2], "could not find expected ':'"), strings.Contains(m[2], "mapping values are not allowed"):
			// The parser often notices a missing colon only on the next line.
			fe.Fix = `a key on this line or the line above lacks ": " (a colon and a space), or a value containing ": " needs quotes`
		}
	}
	return fe
}

var (
	configType = reflect.TypeFor[Config]()
	codecType  = reflect.TypeFor[valueCodec]()
)

// nodeIndex is what the walker learnt about the document: the line of every
// field path it met, and the paths whose problem it already reported (so that
// Validate does not report them a second time in other words).
type nodeIndex struct {
	lines   map[string]int
	covered map[string]bool
}

func (ix *nodeIndex) has(path string) bool {
	_, ok := ix.lines[path]
	return ok
}

// attach drops problems at or under a covered path and gives the others the
// line of their field, or of its nearest ancestor present in the document.
func (ix *nodeIndex) attach(errs ValidationErrors) ValidationErrors {
	var out ValidationErrors
	for _, e := range errs {
		if ix.coveredAt(e.Path) {
			continue
		}
		if e.Line == 0 {
			e.Line = ix.lineOf(e.Path)
		}
		out = append(out, e)
	}
	return out
}

func (ix *nodeIndex) coveredAt(path string) bool {
	for p := path; p != ""; p = parentPath(p) {
		if ix.covered[p] {
			return true
		}
	}
	return false
}

func (ix *nodeIndex) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if line, ok := ix.lines[p]; ok {
			return line
		}
	}
	return 0
}

// parentPath strips the last segment: a.b[0].c -> a.b[0] -> a.b -> a -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		return p[:strings.LastIndex(p, "[")]
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func indexPath(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

// walker checks the YAML tree against the Go types, driven by reflection so
// that the schema is written once, in types.go.
type walker struct {
	idx  nodeIndex
	errs ValidationErrors
}

func (w *walker) fail(path string, n *yaml.Node, msg, fix string) {
	w.errs = append(w.errs, FieldError{Path: path, Line: n.Line, Message: msg, Fix: fix})
	w.idx.covered[path] = true
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(codecType) {
		w.checkCodec(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		// An empty section ("flags:" and nothing under it) means unset.
		if !isNull(n) {
			w.walkMapping(n, t, path)
		}
	case reflect.Slice:
		if !isNull(n) {
			w.walkSequence(n, t.Elem(), path)
		}
	default:
		w.checkScalar(n, t.Kind(), path)
	}
}

func (w *walker) walkMapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.fail(path, n, "expected a mapping of fields, got "+describeNode(n),
			"put its fields on the lines below it, indented two more spaces")
		return
	}
	fields := fieldsOf(t)
	present := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		present[n.Content[i].Value] = true
	}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		child := joinPath(path, k.Value)
		if line, dup := firstLine[k.Value]; dup {
			w.fail(child, k, fmt.Sprintf("set twice (first on line %d); YAML tools disagree on which value wins", line),
				"keep only one")
			continue
		}
		firstLine[k.Value] = k.Line
		ft, ok := fields.byName[k.Value]
		if !ok {
			w.unknownField(path, k, fields.names, present)
			continue
		}
		w.idx.lines[child] = k.Line
		w.walk(v, ft, child)
	}
}

func (w *walker) walkSequence(n *yaml.Node, elem reflect.Type, path string) {
	if n.Kind != yaml.SequenceNode {
		w.fail(path, n, "expected a list, got "+describeNode(n),
			`start each entry on its own line with "- "`)
		return
	}
	for i, item := range n.Content {
		p := indexPath(path, i)
		w.idx.lines[p] = item.Line
		w.walk(item, elem, p)
	}
}

// unknownField reports a key the plugin would silently drop, with the most
// useful fix: a near sibling (a typo), the same field at another level (an
// indentation mistake), or the list of fields allowed here.
func (w *walker) unknownField(parent string, k *yaml.Node, siblings []string, present map[string]bool) {
	path := joinPath(parent, k.Value)
	fix := didYouMean(k.Value, siblings)
	if best, _ := suggest.Closest(k.Value, siblings); best != "" {
		// The intended field is absent because of this typo: do not also
		// report it as missing.
		if !present[best] {
			w.idx.covered[joinPath(parent, best)] = true
		}
	} else if name, place := elsewhere(k.Value, parent); name == k.Value {
		fix = fmt.Sprintf("%s belongs %s; move it there", quote(name), place)
	} else if name != "" {
		fix = fmt.Sprintf("did you mean %s? It belongs %s", quote(name), place)
	} else {
		where := "here"
		if parent != "" {
			where = "under " + parent
		}
		fix = fmt.Sprintf("remove it; the fields allowed %s are %s", where, strings.Join(siblings, ", "))
	}
	w.fail(path, k, fmt.Sprintf("unknown field %s: the plugin would silently ignore it", quote(k.Value)), fix)
}

func (w *walker) checkCodec(n *yaml.Node, t reflect.Type, path string) {
	c := reflect.New(t).Interface().(valueCodec)
	var v any
	err := n.Decode(&v)
	if err == nil {
		err = c.fromValue(v)
	}
	if err != nil {
		w.fail(path, n, err.Error(), c.shapeHint())
	}
}

// yaml11Bools are the words YAML 1.1 (the plugin's parser) reads as booleans
// and YAML 1.2 reads as text.
var yaml11Bools = map[string]bool{
	"y": true, "yes": true, "n": true, "no": true, "on": true, "off": true,
}

func (w *walker) checkScalar(n *yaml.Node, kind reflect.Kind, path string) {
	want := map[reflect.Kind]string{reflect.String: "text", reflect.Bool: "true or false"}[kind]
	if want == "" {
		want = "a whole number"
	}
	switch {
	case n.Kind != yaml.ScalarNode:
		w.fail(path, n, fmt.Sprintf("expected %s, got %s", want, describeNode(n)), "write a single value after the colon")
		return
	case isNull(n):
		w.fail(path, n, "has no value", "write the value after the colon, or remove the line")
		return
	}
	switch kind {
	case reflect.String:
		if n.Tag != "!!str" {
			w.fail(path, n, fmt.Sprintf("expected text, got %s, which the plugin cannot read as text", describeNode(n)),
				"put it in quotes: "+quote(n.Value))
		}
	case reflect.Bool:
		switch {
		case n.Tag == "!!bool":
		case yaml11Bools[strings.ToLower(n.Value)]:
			w.fail(path, n, fmt.Sprintf("%s is a boolean to the plugin's YAML 1.1 parser but text to YAML 1.2 tools", quote(n.Value)),
				"write true or false")
		default:
			w.fail(path, n, "expected true or false, got "+describeNode(n), "write true or false")
		}
	default:
		switch {
		case n.Tag == "!!int":
		case n.Tag == "!!str" && isInteger(n.Value):
			w.fail(path, n, fmt.Sprintf("expected a number, got the quoted text %s, which the plugin cannot read as a number", quote(n.Value)),
				"remove the quotes: "+n.Value)
		default:
			w.fail(path, n, "expected a whole number, got "+describeNode(n), "write a whole number such as 4")
		}
	}
}

func isInteger(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!null":
		return "nothing"
	case "!!str":
		return "the text " + quote(n.Value)
	case "!!bool":
		return "the boolean " + n.Value
	default:
		return "the number " + n.Value
	}
}

// structFields lists a struct's YAML field names in declaration order.
type structFields struct {
	names  []string
	byName map[string]reflect.Type
}

var fieldCache sync.Map // reflect.Type -> structFields

func fieldsOf(t reflect.Type) structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(structFields)
	}
	f := structFields{byName: map[string]reflect.Type{}}
	for sf := range t.Fields() {
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		f.names = append(f.names, name)
		f.byName[name] = sf.Type
	}
	fieldCache.Store(t, f)
	return f
}

// fieldPlaces maps every field name of the config to the places it may
// appear, e.g. "replicas" -> ["sharing.timeSlicing.resources[*]", ...].
var fieldPlaces = sync.OnceValue(func() map[string][]string {
	places := map[string][]string{}
	var visit func(t reflect.Type, place string)
	visit = func(t reflect.Type, place string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if reflect.PointerTo(t).Implements(codecType) {
			return
		}
		switch t.Kind() {
		case reflect.Struct:
			f := fieldsOf(t)
			for _, name := range f.names {
				places[name] = append(places[name], place)
				visit(f.byName[name], joinPath(place, name))
			}
		case reflect.Slice:
			visit(t.Elem(), place+"[*]")
		}
	}
	visit(configType, "")
	return places
})

var listIndexRe = regexp.MustCompile(`\[\d+\]`)

// elsewhere finds a field named like key at another level of the config and
// describes the place nearest to parent.
func elsewhere(key, parent string) (name, place string) {
	places := fieldPlaces()
	if _, ok := places[key]; ok {
		name = key
	} else {
		names := make([]string, 0, len(places))
		for n := range places {
			names = append(names, n)
		}
		sort.Strings(names)
		name, _ = suggest.Closest(key, names)
	}
	if name == "" {
		return "", ""
	}
	generic := listIndexRe.ReplaceAllString(parent, "[*]")
	best, bestScore := "", -1
	for _, p := range places[name] {
		if p == generic {
			continue
		}
		if score := commonPrefix(p, generic); score > bestScore {
			best, bestScore = p, score
		}
	}
	if bestScore < 0 {
		return "", ""
	}
	return name, describePlace(best)
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func describePlace(place string) string {
	switch {
	case place == "":
		return "at the top level"
	case strings.HasSuffix(place, "[*]"):
		return "under each entry of " + strings.TrimSuffix(place, "[*]")
	default:
		return "under " + place
	}
}
