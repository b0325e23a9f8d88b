package localcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeVersionsMatchToolsModules keeps the cache folders' names honest:
// each pinned release must be the one its tools module requires.
func TestNodeVersionsMatchToolsModules(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := FindRepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ module, require string }{
		{"hack/controlplane", "k8s.io/kubernetes " + KubernetesVersion},
		{"hack/node/containerd", "github.com/containerd/containerd/v2 " + ContainerdVersion},
		{"hack/node/runc", "github.com/opencontainers/runc " + RuncVersion},
		{"hack/node/cni", "github.com/containernetworking/plugins " + CNIPluginsVersion},
	} {
		b, err := os.ReadFile(filepath.Join(root, c.module, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), c.require) {
			t.Errorf("%s/go.mod does not require %s; update the constant in node_binaries.go with the module", c.module, c.require)
		}
	}
	for _, s := range nodeSets(root) {
		b, err := os.ReadFile(filepath.Join(root, s.module, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range s.targets {
			if !strings.Contains(string(b), "\t"+tg.pkg+"\n") && !strings.Contains(string(b), "tool "+tg.pkg+"\n") {
				t.Errorf("%s/go.mod has no tool directive for %s", s.module, tg.pkg)
			}
		}
	}
}
