package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

const exampleConfigPath = "testdata/config-example.yaml"

// exampleConfig is the documented example, as the webhook in gpu-system would load it.
func exampleConfig(t testing.TB) *Config {
	t.Helper()
	cfg, err := LoadConfig(exampleConfigPath, "gpu-system")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// mustParse parses a config body that must be valid.
func mustParse(t testing.TB, body string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(body), "gpu-system")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// applyPatch applies ops with the JSON patch library the API server itself
// uses for webhook patches.
func applyPatch(raw []byte, ops []PatchOp) ([]byte, error) {
	data, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("marshal patch: %w", err)
	}
	patch, err := jsonpatch.DecodePatch(data)
	if err != nil {
		return nil, fmt.Errorf("decode patch %s: %w", data, err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		return nil, fmt.Errorf("apply patch %s: %w", data, err)
	}
	return out, nil
}

// apiServerShaped reports whether raw has the shape the API server always
// sends: a spec object whose containers are objects. Patch paths into a
// null spec or container cannot apply, and the API server never sends one.
func apiServerShaped(raw []byte) bool {
	var top struct {
		Spec *struct {
			Containers     []json.RawMessage `json:"containers"`
			InitContainers []json.RawMessage `json:"initContainers"`
		} `json:"spec"`
	}
	if sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &top) != nil || top.Spec == nil {
		return false
	}
	for _, c := range append(top.Spec.Containers, top.Spec.InitContainers...) {
		if bytes.Equal(bytes.TrimSpace(c), []byte("null")) {
			return false
		}
	}
	return true
}

// roundTrip is the contract every pod must meet, shared by the table tests
// and the fuzz test: Mutate leaves its input alone, its decision is
// well-formed, an allowed patch applies to raw and still decodes as a pod,
// and mutating the patched pod again changes nothing. annotate, when not nil,
// sets annotations on each decoded pod (the patch never touches metadata).
// It returns the decision, and the patched raw JSON when allowed.
func roundTrip(cfg *Config, namespace string, raw []byte, annotate func(*corev1.Pod)) (Decision, []byte, error) {
	decode := func(data []byte) (*corev1.Pod, error) {
		pod, err := DecodePod(data)
		if err == nil && annotate != nil {
			annotate(pod)
		}
		return pod, err
	}
	pod, err := decode(raw)
	if err != nil {
		return Decision{}, nil, err
	}
	before := pod.DeepCopy()
	d := cfg.Mutate(namespace, pod)
	if !reflect.DeepEqual(before, pod) {
		return d, nil, errors.New("Mutate modified its input pod")
	}
	if err := checkShape(pod, d); err != nil {
		return d, nil, err
	}
	if !d.Allowed {
		return d, nil, nil
	}
	patched := raw
	if len(d.Patch) > 0 {
		if patched, err = applyPatch(raw, d.Patch); err != nil {
			return d, nil, err
		}
	}
	again, err := decode(patched)
	if err != nil {
		return d, nil, fmt.Errorf("patched pod does not decode: %w\n%s", err, patched)
	}
	d2 := cfg.Mutate(namespace, again)
	if !d2.Allowed || len(d2.Patch) > 0 {
		return d, nil, fmt.Errorf("second Mutate is not a no-op: allowed=%v reason=%q message=%q patch=%+v\npatched pod: %s",
			d2.Allowed, d2.Reason, d2.Message, d2.Patch, patched)
	}
	return d, patched, nil
}

// checkShape checks the decision's form independently of its content.
func checkShape(pod *corev1.Pod, d Decision) error {
	var errs []error
	for _, w := range d.Warnings {
		if !strings.HasPrefix(w, "gpuslice: ") || len(w) >= 120 {
			errs = append(errs, fmt.Errorf("warning %q: want prefix %q and < 120 chars", w, "gpuslice: "))
		}
		for _, r := range w {
			if r < 0x20 || r > 0x7e {
				errs = append(errs, fmt.Errorf("warning %q has a non-printable character", w))
				break
			}
		}
	}
	if d.Allowed && (d.Reason != "" || d.Message != "") {
		errs = append(errs, fmt.Errorf("allowed decision carries reason %q / message %q", d.Reason, d.Message))
	}
	if !d.Allowed && (d.Reason == "" || d.Message == "" || len(d.Patch) > 0) {
		errs = append(errs, fmt.Errorf("denial needs reason and message and no patch: %+v", d))
	}
	annotated := false
	for _, k := range []string{workload.AnnotationProfiles, workload.AnnotationShares, workload.AnnotationSharesContainer} {
		_, ok := pod.Annotations[k]
		annotated = annotated || ok
	}
	if !annotated && (!d.Allowed || len(d.Patch) > 0 || len(d.Warnings) > 0) {
		errs = append(errs, fmt.Errorf("unannotated pod must pass untouched: %+v", d))
	}
	for _, op := range d.Patch {
		if op.Op != "add" || !strings.HasPrefix(op.Path, "/spec/") || op.Value == nil {
			errs = append(errs, fmt.Errorf("unexpected patch op %+v", op))
		}
	}
	return errors.Join(errs...)
}

// jsonEqual compares two JSON documents semantically.
func jsonEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got: %v", err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		gi, _ := json.MarshalIndent(g, "", "  ")
		wi, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("patched pod differs\n got: %s\nwant: %s", gi, wi)
	}
}
