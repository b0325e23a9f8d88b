package inject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// fuzzConfig has overlapping profiles, a typed device, a namespace
// allow-list, exclusions and hybrid env, so the fuzzer reaches every branch.
const fuzzConfigYAML = `apiVersion: gpuslice.io/v1alpha1
kind: InjectorConfig
excludedNamespaces: [kube-system, gpu-system]
profiles:
- name: nvidia1
  devices: [{name: nvidia1, hostPath: /dev/nvidia1}, {name: nvidiactl, hostPath: /dev/nvidiactl}]
  runtimeClassName: nvidia
- name: intel-qsv
  devices: [{name: dri, hostPath: /dev/dri, type: Directory}]
  namespaces: [media]
- name: tools
  devices: [{name: nvidia-uvm-tools, hostPath: /dev/nvidia-uvm-tools, mountPath: /run/uvm-tools, type: CharDevice}]
  runtimeClassName: nvidia-tools
`

// Annotation selection bits of FuzzMutate's "set" argument.
const (
	setProfiles = 1 << iota
	setShares
	setSharesContainer
)

// FuzzMutate feeds arbitrary pod JSON and annotation values through the
// roundTrip contract: no panic, an allowed patch applies to the raw input and
// still decodes as a pod, and a second Mutate of the patched pod is a no-op.
func FuzzMutate(f *testing.F) {
	cfg, err := ParseConfig([]byte(fuzzConfigYAML), "gpu-system")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"plex", "plex.patched", "vllm", "vllm.patched"} {
		f.Add(readTestdata(f, "pods/"+name+".json"), "", "", "", uint8(0), "media")
	}
	seeds := []struct {
		pod                         string
		profiles, shares, container string
		set                         uint8
		namespace                   string
	}{
		{`{"spec":{"containers":[{"name":"a"}]}}`, "nvidia, NVIDIA1 ,tools", "2", "", setProfiles | setShares, "media"},
		{`{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1"}},"env":[{"name":"X"}]},{"name":"b"}]}}`, "", "3", "b", setShares | setSharesContainer, "ai"},
		{`{"spec":{"volumes":[{"name":"x","hostPath":{"path":"/dev/nvidia0/"}}],"initContainers":[{"name":"i","volumeMounts":[{"name":"o","mountPath":"/dev/nvidiactl"}]}],"containers":[{"name":"a","resources":null}]}}`, "nvidia,intel-qsv", "1", "", setProfiles | setShares, "media"},
		{`{"spec":{"volumes":[{"name":"nvidia0","emptyDir":{}}],"containers":[{"name":"a"}]}}`, "nvidia", "", "", setProfiles, "media"},
		{`{"spec":{"runtimeClassName":"runc","containers":[{"name":"a","resources":{"requests":{"nvidia.com/gpu.shared":"1"}}}]}}`, "tools", "1", "a", setProfiles | setShares | setSharesContainer, "ai"},
		{`{"metadata":{"annotations":{"gpu-directories":"nvidia"}},"spec":{"containers":[{"name":"a","volumeMounts":[]}],"volumes":null}}`, "", "", "", 0, "kube-system"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.pod), s.profiles, s.shares, s.container, s.set, s.namespace)
	}
	f.Fuzz(func(t *testing.T, raw []byte, profiles, shares, container string, set uint8, namespace string) {
		if _, err := DecodePod(raw); err != nil || !apiServerShaped(raw) {
			t.Skip("not a pod as the API server sends it")
		}
		// Annotations are set on the decoded pod rather than in raw: the patch
		// never touches metadata, and this keeps raw byte-for-byte the input.
		annotate := func(p *corev1.Pod) {
			for bit, kv := range map[uint8][2]string{
				setProfiles:        {workload.AnnotationProfiles, profiles},
				setShares:          {workload.AnnotationShares, shares},
				setSharesContainer: {workload.AnnotationSharesContainer, container},
			} {
				if set&bit == 0 {
					continue
				}
				if p.Annotations == nil {
					p.Annotations = map[string]string{}
				}
				p.Annotations[kv[0]] = kv[1]
			}
		}
		if _, _, err := roundTrip(cfg, namespace, raw, annotate); err != nil {
			t.Fatalf("%v\ninput: %s", err, raw)
		}
	})
}
