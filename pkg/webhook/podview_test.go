package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// FuzzMutationPodMatchesFullPod: Mutate decides the same (patch, warnings,
// denial) on the part of the pod the handler decodes as on the whole pod,
// for any pod the full decode accepts, with any of the annotations set.
func FuzzMutationPodMatchesFullPod(f *testing.F) {
	cfgYAML, err := os.ReadFile("../inject/testdata/config-example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	cfg, err := inject.ParseConfig(cfgYAML, "gpu-system")
	if err != nil {
		f.Fatal(err)
	}
	pods, err := filepath.Glob("../inject/testdata/pods/*.json")
	if err != nil || len(pods) == 0 {
		f.Fatalf("no seed pods: %v", err)
	}
	for _, p := range pods {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for set := range uint8(8) {
			f.Add(raw, "nvidia, intel-qsv", "2", "", set)
		}
	}
	for _, raw := range []string{
		`{"spec":{"volumes":[{"name":"nvidia0","emptyDir":{}}],"containers":[{"name":"a"}]}}`,
		`{"spec":{"volumes":[{"name":"x","hostPath":{"path":"/dev/nvidia0/"}}],"initContainers":[{"name":"i","volumeMounts":[{"name":"o","mountPath":"/dev/nvidiactl"}]}],"containers":[{"name":"a","resources":null}]}}`,
		`{"spec":{"runtimeClassName":"runc","containers":[{"name":"a","resources":{"requests":{"nvidia.com/gpu.shared":"1"}},"env":[{"name":"NVIDIA_VISIBLE_DEVICES","value":"0"}]},{"name":"b","env":[]}]}}`,
		`{"metadata":{"annotations":{"gpu-directories":"nvidia"}},"spec":{"containers":[{"name":"a","volumeMounts":[]}],"volumes":null}}`,
	} {
		f.Add([]byte(raw), "nvidia", "1", "b", uint8(7))
	}
	wide := Limits{MaxContainers: 1 << 20, MaxVolumes: 1 << 20}
	f.Fuzz(func(t *testing.T, raw []byte, profiles, shares, container string, set uint8) {
		full, err := inject.DecodePod(raw)
		if err != nil {
			t.Skip("not a pod")
		}
		part, reason, _, err := wide.decodeMutationPod(raw)
		if err != nil || reason != "" {
			t.Fatalf("the whole pod decodes but its mutation part does not: %v %s\ninput: %s", err, reason, raw)
		}
		// In a review, decoded in the same pass as the envelope: the same
		// pod, and the request's fields as the whole review has them.
		body := rawReview(string(raw))
		fastReview, inReview, ok := decodeCreateReview(body)
		if !ok {
			t.Fatalf("the review does not decode in one pass\ninput: %s", body)
		}
		fromReview, _, _, err := wide.podForMutation(inReview)
		if err != nil || !reflect.DeepEqual(fromReview, part) {
			t.Fatalf("the pod decoded with its review differs (%v):\n%+v\n%+v", err, fromReview, part)
		}
		var whole admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &whole); err != nil {
			t.Fatal(err)
		}
		whole.Request.Object, whole.Request.Resource = runtime.RawExtension{}, metav1.GroupVersionResource{}
		if !reflect.DeepEqual(fastReview, whole) {
			t.Fatalf("the review decoded in one pass\n%+v\ndiffers from the whole review\n%+v", fastReview, whole)
		}
		for _, p := range []*corev1.Pod{full, part} {
			for i, kv := range [][2]string{{workload.AnnotationProfiles, profiles}, {workload.AnnotationShares, shares}, {workload.AnnotationSharesContainer, container}} {
				if set&(1<<i) != 0 {
					if p.Annotations == nil {
						p.Annotations = map[string]string{}
					}
					p.Annotations[kv[0]] = kv[1]
				}
			}
		}
		if want, got := cfg.Mutate("media", full), cfg.Mutate("media", part); !reflect.DeepEqual(want, got) {
			t.Errorf("on the decoded part of the pod Mutate decided\n%+v\non the whole pod\n%+v\ninput: %s", got, want, raw)
		}
	})
}
