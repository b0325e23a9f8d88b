package admit

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/internal/seed/gatecluster"
	"github.com/gpuslice/gpuslice/pkg/gate"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const manifests = `# a comment document
---
apiVersion: v1
kind: Namespace
metadata: {name: ai-dev}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ollama}
spec:
  replicas: 2
  selector: {matchLabels: {app: ollama}}
  template:
    metadata: {labels: {app: ollama}}
    spec: {containers: [{name: ollama, resources: {limits: {nvidia.com/gpu.shared: "1"}}}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: batch}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      parallelism: 3
      template:
        spec: {restartPolicy: Never, containers: [{name: embed}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: batch}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: run}]}
---
apiVersion: v1
kind: Pod
metadata: {name: scratch, namespace: ai-dev, annotations: {gpuslice.io/preemptible: "true"}}
spec: {containers: [{name: main}]}
`

func TestRead(t *testing.T) {
	targets, skipped, err := Read(strings.NewReader(manifests), "m.yaml", "ai")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range targets {
		got = append(got, tg.Workload.Qualified()+" pods="+string(rune('0'+tg.Pods))+" "+tg.Source)
	}
	want := []string{
		"statefulset ai/ollama pods=2 m.yaml, document 3",
		"cronjob batch/nightly pods=3 m.yaml, document 4",
		"job batch/once pods=1 m.yaml, document 5",
		"pod ai-dev/scratch pods=1 m.yaml, document 6",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("targets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(skipped) != 1 || skipped[0].Kind != "Namespace" || skipped[0].Name != "ai-dev" {
		t.Errorf("skipped %+v", skipped)
	}
	if targets[3].Annotations[workload.AnnotationPreemptible] != "true" {
		t.Errorf("pod annotations %v", targets[3].Annotations)
	}
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{name: "no kind", manifest: "metadata: {name: x}\n", want: "m.yaml, document 1: no kind"},
		{name: "no name", manifest: "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a}]}\n", want: "Pod without metadata.name"},
		{name: "unknown field", manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n", want: `m.yaml, document 1: Deployment: error unmarshaling JSON: while decoding JSON: json: unknown field "replica"`},
		{name: "not YAML", manifest: "kind: [\n", want: "m.yaml, document 1: not YAML or JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Read(strings.NewReader(tc.manifest), "m.yaml", "ai")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	_, _, err := ReadAll([]string{"cm.yaml"}, func(string) ([]byte, error) {
		return []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"), nil
	}, "ai")
	if err == nil || !strings.Contains(err.Error(), "cm.yaml: no Deployment, StatefulSet, Job, CronJob or Pod") {
		t.Errorf("only a ConfigMap: %v", err)
	}
}

func vllm(replicas, shares string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-server, namespace: ai-dev, annotations: {gpuslice.io/preemptible: "true"}}
spec:
  replicas: ` + replicas + `
  selector: {matchLabels: {app: vllm}}
  template:
    metadata: {labels: {app: vllm}, annotations: {gpu-directories: nvidia, gpu-shares: "` + shares + `"}}
    spec: {nodeSelector: {kubernetes.io/hostname: homelabai}, containers: [{name: vllm}]}
`
}

var plexRef = workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}

// squatterNotReady adds a workload in ai-dev that protects itself by its
// own annotation, its pod not Ready.
func squatterNotReady(c *gatecluster.Cluster) {
	c.Workload("ai-dev", "squatter", map[string]string{workload.AnnotationProtected: "true"}, "", 1, "homelabai", true)
	p := &c.Pods[len(c.Pods)-1]
	p.Status.Conditions[0].Status = corev1.ConditionFalse
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(c *gatecluster.Cluster)
		manifest   string
		breakGlass string
		trust      *policy.Trust
		wantCode   gate.Code
		// want are substrings of the first workload's problems or note.
		want           []string
		wantOverridden bool
	}{{
		name:     "gpu-shares becomes the request: 2 of 4 free",
		manifest: vllm("1", "2"),
		wantCode: gate.CodeOK,
	}, {
		name:     "gpu-shares counted for every replica",
		manifest: vllm("3", "2"),
		wantCode: gate.CodeSharesShort,
		want:     []string{"for each of 3 pods (room for 2)"},
	}, {
		name:     "zero replicas start nothing",
		setup:    func(c *gatecluster.Cluster) { c.Hog("homelabai", 4) },
		manifest: vllm("0", "2"),
		wantCode: gate.CodeOK,
		want:     []string{"starts no pod"},
	}, {
		name:       "break-glass overrides a broken Plex",
		setup:      (*gatecluster.Cluster).PlexNotReady,
		manifest:   vllm("1", "2"),
		breakGlass: "demo",
		wantCode:   gate.CodeOK, wantOverridden: true,
		want: []string{"media/plex is unhealthy"},
	}, {
		name:       "break-glass does not override a NotReady node",
		setup:      func(c *gatecluster.Cluster) { c.NodeNotReady("homelabai") },
		manifest:   vllm("1", "2"),
		breakGlass: "demo",
		wantCode:   gate.CodeNodeUnavailable,
		want:       []string{"homelabai is NotReady"},
	}, {
		name:     "a workload's own protected annotation, believed without trust",
		setup:    (*gatecluster.Cluster).PlexNotReady,
		manifest: strings.Replace(vllm("1", "2"), `gpuslice.io/preemptible: "true"`, `gpuslice.io/protected: "true"`, 1),
		wantCode: gate.CodeOK,
	}, {
		name:     "a workload's own protected annotation, ignored as the gate ignores it",
		setup:    (*gatecluster.Cluster).PlexNotReady,
		manifest: strings.Replace(vllm("1", "2"), `gpuslice.io/preemptible: "true"`, `gpuslice.io/protected: "true"`, 1),
		trust:    policy.NewTrust([]workload.Ref{plexRef}, nil),
		wantCode: gate.CodeProtectedUnhealthy,
		want:     []string{"media/plex is unhealthy"},
	}, {
		name:     "a workload's own protected annotation, believed in a trusted namespace",
		setup:    (*gatecluster.Cluster).PlexNotReady,
		manifest: strings.Replace(vllm("1", "2"), `gpuslice.io/preemptible: "true"`, `gpuslice.io/protected: "true"`, 1),
		trust:    policy.NewTrust([]workload.Ref{plexRef}, []string{"ai-dev"}),
		wantCode: gate.CodeOK,
	}, {
		name:     "an unhealthy workload protected by its own annotation holds others up without trust",
		setup:    squatterNotReady,
		manifest: vllm("1", "2"),
		wantCode: gate.CodeProtectedUnhealthy,
		want:     []string{"ai-dev/squatter is unhealthy"},
	}, {
		name:     "an unhealthy workload protected by its own annotation holds nothing up under trust",
		setup:    squatterNotReady,
		manifest: vllm("1", "2"),
		trust:    policy.NewTrust([]workload.Ref{plexRef}, nil),
		wantCode: gate.CodeOK,
	}, {
		name:     "not a GPU workload",
		setup:    (*gatecluster.Cluster).PlexNotReady,
		manifest: "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: web}\nspec: {containers: [{name: nginx}]}\n",
		wantCode: gate.CodeOK,
		want:     []string{"not a GPU workload"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gatecluster.Homelab()
			if tt.setup != nil {
				tt.setup(c)
			}
			targets, skipped, err := Read(strings.NewReader(tt.manifest), "m.yaml", "default")
			if err != nil {
				t.Fatal(err)
			}
			r, err := Judge(&c.Cluster, targets, skipped, Options{BreakGlass: tt.breakGlass, Trust: tt.trust})
			if err != nil {
				t.Fatal(err)
			}
			v := r.Workloads[0]
			if r.Code != tt.wantCode || v.Overridden != tt.wantOverridden {
				t.Errorf("code %d overridden %v, want %d %v: %+v", r.Code, v.Overridden, tt.wantCode, tt.wantOverridden, v)
			}
			text := v.Note
			for _, p := range v.Problems {
				text += "\n" + p.Message
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestJudgeBadInput(t *testing.T) {
	c := gatecluster.Homelab()
	for _, tc := range []struct{ name, manifest, want string }{
		{name: "bad gpu-shares", manifest: vllm("1", "two"), want: "deployment ai-dev/vllm-server (m.yaml, document 1): the device-injection webhook would refuse its pods"},
		{name: "bad policy", manifest: strings.Replace(vllm("1", "2"), `gpuslice.io/preemptible: "true"`, `gpuslice.io/preemptible: "true", gpuslice.io/hold-down: soon`, 1), want: "deployment ai-dev/vllm-server (m.yaml, document 1): "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, _, err := Read(strings.NewReader(tc.manifest), "m.yaml", "default")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Judge(&c.Cluster, targets, nil, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestWriteTableBreakGlass(t *testing.T) {
	for _, tc := range []struct {
		name       string
		overridden bool
		want       string
	}{
		{name: "overrode a problem", overridden: true, want: `Break-glass: "demo"; recorded as an Event`},
		{name: "nothing to override", want: "Break-glass: nothing to override"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{BreakGlass: "demo", Workloads: []Verdict{{Target: Target{Workload: workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}, Pods: 1}, Overridden: tc.overridden}}}
			var b strings.Builder
			if err := WriteTable(&b, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tc.want) {
				t.Errorf("lacks %q:\n%s", tc.want, b.String())
			}
		})
	}
}
