// Package structure keeps the layering rules of the repository true: the
// pure packages link no client-go, nothing under pkg/ reaches into the
// test harness or the demo, the binary links neither kustomize nor Go's
// plugin package, the agent's binary links one API group, and each annotation gpuslice reads or writes is spelled
// once, in pkg/workload.
package structure

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/gpuslice/gpuslice"

// pure are the packages that compute on objects they are given: they are
// table-tested without a cluster and must not link client-go.
var pure = []string{
	"pkg/workload", "pkg/inject", "pkg/admit", "pkg/ledger", "pkg/policy", "pkg/gate", "pkg/clusterview", "pkg/journal",
	"pkg/pluginconfig", "pkg/cgroup", "pkg/podenv", "pkg/podstatus", "pkg/doctor", "internal/seed", "internal/table",
}

// goList runs go list -json over patterns from the repository root.
func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decoding go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

type listed struct {
	ImportPath                               string
	Deps, Imports, TestImports, XTestImports []string
}

func TestPurePackagesLinkNoClientGo(t *testing.T) {
	var patterns []string
	for _, p := range pure {
		patterns = append(patterns, "./"+p)
	}
	for _, p := range goList(t, patterns...) {
		for _, dep := range p.Deps {
			if strings.HasPrefix(dep, "k8s.io/client-go") {
				t.Errorf("%s is pure but links %s: move the Kubernetes I/O to a package at the edge", p.ImportPath, dep)
				break
			}
		}
	}
}

func TestPkgDoesNotImportTheHarness(t *testing.T) {
	banned := []string{module + "/internal/harness", module + "/internal/demo", module + "/test"}
	for _, p := range goList(t, "./pkg/...") {
		for _, imp := range append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...) {
			for _, b := range banned {
				if imp == b || strings.HasPrefix(imp, b+"/") {
					t.Errorf("%s imports %s: packages under pkg/ (and their unit tests) use internal/seed's fixtures and internal/standin's doubles, never the control-plane harness or the demo", p.ImportPath, imp)
				}
			}
		}
	}
}

func TestBinaryLinksNoPluginOrKustomize(t *testing.T) {
	p := goList(t, "./cmd/gpuslice")[0]
	for _, dep := range p.Deps {
		if dep == "plugin" || strings.HasPrefix(dep, "sigs.k8s.io/kustomize") {
			t.Errorf("cmd/gpuslice links %s: it makes the binary larger and linked with BIND_NOW; use client-go's clientcmd, not cli-runtime's genericclioptions", dep)
		}
	}
}

// TestAgentLinksOneAPIGroup keeps gpuslice-agent small: it reads pods and
// nothing else, and the typed clientset (or any API group beside core/v1)
// would bring back the 12 MB that made most of its resident memory.
func TestAgentLinksOneAPIGroup(t *testing.T) {
	p := goList(t, "./cmd/gpuslice-agent")[0]
	for _, dep := range p.Deps {
		switch {
		case dep == "plugin", strings.HasPrefix(dep, "sigs.k8s.io/kustomize"),
			strings.HasPrefix(dep, "k8s.io/client-go/kubernetes"), strings.HasPrefix(dep, "k8s.io/client-go/informers"),
			strings.HasPrefix(dep, "k8s.io/api/") && dep != "k8s.io/api/core/v1":
			t.Errorf("cmd/gpuslice-agent links %s: the agent reads pods only, through agent.NodePods; keep the typed clientset and other API groups out of its imports", dep)
		}
	}
}

// annotationLiteral matches the string literals of gpuslice's annotation
// names, prefixed (gpuslice.io/...) or as the gpu-directory-injector
// spells them.
var annotationLiteral = regexp.MustCompile(`^(gpuslice\.io/[a-z-]+|gpu-directories|gpu-shares|gpu-shares-container|gpu-memory)$`)

func TestAnnotationsAreSpelledOnce(t *testing.T) {
	seen := map[string][]string{}
	for _, dir := range []string{"cmd", "pkg", "internal", "bench", "hack"} {
		err := filepath.WalkDir(filepath.Join("../..", dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				// Doctor's check names may read like annotations ("gpu-shares").
				if spec, ok := n.(*ast.ValueSpec); ok && strings.HasPrefix(spec.Names[0].Name, "Check") {
					return false
				}
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				if s, err := strconv.Unquote(lit.Value); err == nil && annotationLiteral.MatchString(s) {
					seen[s] = append(seen[s], path)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, where := range seen {
		if len(where) > 1 || !strings.Contains(filepath.ToSlash(where[0]), "pkg/workload/") {
			t.Errorf("annotation %q is spelled in %v: name it once in pkg/workload and use the constant", name, where)
		}
	}
	if len(seen) == 0 {
		t.Fatal("found no annotation names at all: the walk is broken")
	}
}
