package pluginconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/internal/testutil/golden"
)

// readTestdata returns a file under testdata.
func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parseErrors parses doc and returns its problems, failing if there are none
// or if the error is not a ValidationErrors.
func parseErrors(t *testing.T, doc string) ValidationErrors {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", doc)
	}
	if c != nil {
		t.Errorf("Parse returned a config along with errors")
	}
	var errs ValidationErrors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error is %T, want ValidationErrors: %v", err, err)
	}
	return errs
}

// mustParse parses doc and fails the test on any problem.
func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse:\n%v\ninput:\n%s", err, doc)
	}
	return c
}

// want describes an expected problem; line 0 means "do not check".
type want struct {
	path, fragment string
	line           int
}

// findError returns the problem at w.path whose message or fix contains
// w.fragment.
func findError(errs ValidationErrors, w want) (FieldError, bool) {
	for _, e := range errs {
		if e.Path == w.path && strings.Contains(e.Message+" "+e.Fix, w.fragment) {
			return e, true
		}
	}
	return FieldError{}, false
}

// expectErrors checks that every wanted problem is present, with its line
// when one is given, and that each problem comes with a fix.
func expectErrors(t *testing.T, errs ValidationErrors, wants ...want) {
	t.Helper()
	for _, w := range wants {
		e, ok := findError(errs, w)
		if !ok {
			t.Errorf("no problem at %q containing %q; got:\n%v", w.path, w.fragment, errs)
			continue
		}
		if w.line != 0 && e.Line != w.line {
			t.Errorf("%s: line %d, want %d", w.path, e.Line, w.line)
		}
	}
	for _, e := range errs {
		if e.Fix == "" {
			t.Errorf("%s: %q has no fix", e.Path, e.Message)
		}
	}
}

// checkGolden compares got with testdata/<name>.golden.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name+".golden"), got)
}
