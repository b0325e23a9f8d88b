package ops

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const gmu = "GPU_MEMORY_UTILIZATION"

func TestParseFraction(t *testing.T) {
	for in, ok := range map[string]bool{"0.6": true, "1": true, "0.05": true, " 0.7 ": true, "0": false, "1.01": false, "-0.5": false, "NaN": false, "60%": false, "": false} {
		if _, err := workload.ParseFraction(in); (err == nil) != ok {
			t.Errorf("ParseFraction(%q): %v", in, err)
		}
	}
	if _, err := workload.ParseFraction("1.5"); err == nil || !strings.Contains(err.Error(), "want a number in (0, 1]") {
		t.Errorf("message: %v", err)
	}
}

// vllm is the seed's vLLM Deployment with its container edited.
func vllm(edit func(c *corev1.Container)) *appsWorkload {
	w := seed.VLLMWorkload()
	if edit != nil {
		edit(&w.Deployment.Spec.Template.Spec.Containers[0])
	}
	return wrapDeployment(w.Deployment)
}

func configMaps(cms ...*corev1.ConfigMap) map[string]*corev1.ConfigMap {
	out := map[string]*corev1.ConfigMap{}
	for _, cm := range cms {
		out[cm.Name] = cm
	}
	return out
}

func cm(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ai-dev"}, Data: data}
}

func TestPlanMemory(t *testing.T) {
	seedCM := seed.VLLMWorkload().ConfigMap
	envValue := func(v string) corev1.EnvVar { return corev1.EnvVar{Name: gmu, Value: v} }
	keyRef := func(cmName, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: gmu, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: cmName}, Key: key}}}
	}
	for _, tc := range []struct {
		name string
		w    *appsWorkload
		cms  map[string]*corev1.ConfigMap
		want []MemorySetting
		err  string
	}{
		{
			name: "seed: envFrom ConfigMap vllm-config", w: vllm(nil), cms: configMaps(seedCM),
			want: []MemorySetting{{Container: "vllm", ConfigMap: "vllm-config", Key: gmu, Old: "0.70", New: "0.6", Changed: true}},
		},
		{
			name: "same value written differently changes nothing", w: vllm(nil), cms: configMaps(seedCM),
			want: []MemorySetting{{Container: "vllm", ConfigMap: "vllm-config", Key: gmu, Old: "0.70", New: "0.7"}},
		},
		{
			name: "env value in the template",
			w:    vllm(func(c *corev1.Container) { c.EnvFrom = nil; c.Env = append(c.Env, envValue("0.9")) }),
			want: []MemorySetting{{Container: "vllm", Key: gmu, Old: "0.9", New: "0.6", Changed: true}},
		},
		{
			name: "env value overrides envFrom, as in the kubelet",
			w:    vllm(func(c *corev1.Container) { c.Env = append(c.Env, envValue("0.8")) }), cms: configMaps(seedCM),
			want: []MemorySetting{{Container: "vllm", Key: gmu, Old: "0.8", New: "0.6", Changed: true}},
		},
		{
			name: "later envFrom wins",
			w: vllm(func(c *corev1.Container) {
				c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "override"}}})
			}),
			cms:  configMaps(seedCM, cm("override", map[string]string{gmu: "0.5"})),
			want: []MemorySetting{{Container: "vllm", ConfigMap: "override", Key: gmu, Old: "0.5", New: "0.6", Changed: true}},
		},
		{
			name: "envFrom prefix",
			w: vllm(func(c *corev1.Container) {
				c.EnvFrom = []corev1.EnvFromSource{{Prefix: "GPU_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gpu"}}}}
			}),
			cms:  configMaps(cm("gpu", map[string]string{"MEMORY_UTILIZATION": "0.7"})),
			want: []MemorySetting{{Container: "vllm", ConfigMap: "gpu", Key: "MEMORY_UTILIZATION", Old: "0.7", New: "0.6", Changed: true}},
		},
		{
			name: "configMapKeyRef under another key",
			w:    vllm(func(c *corev1.Container) { c.EnvFrom = nil; c.Env = append(c.Env, keyRef("shared", "vllm-mem")) }),
			cms:  configMaps(cm("shared", map[string]string{"vllm-mem": "0.7"})),
			want: []MemorySetting{{Container: "vllm", ConfigMap: "shared", Key: "vllm-mem", Old: "0.7", New: "0.6", Changed: true}},
		},
		{
			name: "two containers reading one ConfigMap key: one setting",
			w: func() *appsWorkload {
				w := vllm(nil)
				c := w.template.Spec.Containers[0]
				c.Name = "vllm-embed"
				w.template.Spec.Containers = append(w.template.Spec.Containers, c)
				return w
			}(),
			cms:  configMaps(seedCM),
			want: []MemorySetting{{Container: "vllm", ConfigMap: "vllm-config", Key: gmu, Old: "0.70", New: "0.6", Changed: true}},
		},
		{
			name: "not read anywhere: where it looked and how to add it",
			w: vllm(func(c *corev1.Container) {
				c.Args = []string{"--gpu-memory-utilization=0.9"}
				c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "hf-token"}}})
			}),
			cms: configMaps(cm("vllm-config", map[string]string{"MODEL": "x"})),
			err: "deployment ai-dev/vllm-server does not read GPU_MEMORY_UTILIZATION: looked at env of container vllm, " +
				"ConfigMap vllm-config (envFrom; no key GPU_MEMORY_UTILIZATION), Secret hf-token (envFrom; gpuslice does not read Secrets), " +
				"args of container vllm (they set --gpu-memory-utilization themselves; pass $(GPU_MEMORY_UTILIZATION) there). " +
				"Add it to the pod template (kubectl set env deployment/vllm-server -n ai-dev GPU_MEMORY_UTILIZATION=0.6)",
		},
		{
			name: "missing ConfigMap behind envFrom",
			w:    vllm(nil),
			err:  "ConfigMap vllm-config (envFrom; not found)",
		},
		{
			name: "from a Secret: refused",
			w: vllm(func(c *corev1.Container) {
				c.Env = append(c.Env, corev1.EnvVar{Name: gmu, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}})
			}),
			cms: configMaps(seedCM),
			err: "comes from Secret s key k, which gpuslice does not write",
		},
		{
			name: "configMapKeyRef to a missing ConfigMap: refused",
			w:    vllm(func(c *corev1.Container) { c.Env = append(c.Env, keyRef("gone", gmu)) }),
			cms:  configMaps(seedCM),
			err:  "ConfigMap gone key GPU_MEMORY_UTILIZATION, which does not exist: create it",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fraction := "0.6"
			if len(tc.want) > 0 {
				fraction = tc.want[0].New
			}
			got, err := planMemory(tc.w, tc.cms, fraction)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("settings %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("setting %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestSetEnvChangesTheValueTheKubeletUses(t *testing.T) {
	w := vllm(func(c *corev1.Container) {
		c.Env = append(c.Env, corev1.EnvVar{Name: gmu, Value: "0.9"}, corev1.EnvVar{Name: gmu, Value: "0.8"})
	})
	setEnv(w, "vllm", gmu, "0.5")
	env := w.template.Spec.Containers[0].Env
	if env[len(env)-2].Value != "0.9" || env[len(env)-1].Value != "0.5" {
		t.Errorf("env %+v", env)
	}
}

func TestReaders(t *testing.T) {
	target := vllm(nil)
	reader := func(name string, edit func(*corev1.PodSpec)) *appsWorkload {
		w := vllm(nil)
		w.Ref.Name = name
		w.meta.Name = name
		w.template.Spec.Containers[0].EnvFrom = nil
		edit(&w.template.Spec)
		return w
	}
	envFrom := reader("embed", func(s *corev1.PodSpec) {
		s.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}}}}
	})
	keyRef := reader("router", func(s *corev1.PodSpec) {
		s.Containers[0].Env = []corev1.EnvVar{{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}, Key: gmu}}}}
	})
	otherKey := reader("model-cache", func(s *corev1.PodSpec) {
		s.Containers[0].Env = []corev1.EnvVar{{Name: "MODEL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}, Key: "MODEL"}}}}
	})
	volume := reader("dashboard", func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}}}}}
	})
	volumeOtherItems := reader("prompts", func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}, Items: []corev1.KeyToPath{{Key: "MODEL", Path: "model"}}}}}}
	})
	all := []*appsWorkload{target, envFrom, keyRef, otherKey, volume, volumeOtherItems}
	others, restarts, affected := readers(all, target.Ref, []cmKey{{"vllm-config", gmu}}, []Restart{{Workload: target.Ref}})
	if len(others) != 2 || others[0] != envFrom || others[1] != keyRef {
		t.Errorf("restarted others: %v", others)
	}
	if len(restarts) != 3 || restarts[1].Why != "reads ConfigMap vllm-config (envFrom)" || restarts[2].Why != "reads ConfigMap vllm-config key GPU_MEMORY_UTILIZATION (env MEM)" {
		t.Errorf("restarts: %+v", restarts)
	}
	if len(affected) != 1 || affected[0].Workload.Name != "dashboard" || !strings.Contains(affected[0].Why, "mounts ConfigMap vllm-config as volume cfg") {
		t.Errorf("affected: %+v", affected)
	}
}

func TestCheckBudget(t *testing.T) {
	const gib = int64(1) << 30
	mem := func(max int64) *ledger.MemoryRange {
		return &ledger.MemoryRange{Min: *resource.NewQuantity(max, resource.BinarySI), Max: *resource.NewQuantity(max, resource.BinarySI)}
	}
	// The seed after AI-dev: 12 GiB, vLLM at 0.70 (8.4 GiB) beside 5.5-10 GiB of others: 18.4 GiB potential.
	report := func() *ledger.Report {
		return &ledger.Report{Nodes: []ledger.NodeReport{{
			Name: "homelabai", GPUMemoryBytes: 12 * gib,
			VRAM: ledger.VRAMSummary{AvailableBytes: 12 * gib, MaxBytes: 10*gib + 8602<<20},
			Workloads: []ledger.Workload{
				{Namespace: "ai", Kind: workload.KindDeployment, Name: "whisper", Pods: 1, Memory: mem(3 * gib)},
				{Namespace: "ai-dev", Kind: workload.KindDeployment, Name: "vllm-server", Pods: 1, Memory: mem(8602 << 20)},
			},
		}}}
	}
	vllm := workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}
	for _, tc := range []struct {
		name      string
		old, new  string
		overAlloc bool
		report    *ledger.Report
		err       string
		note      string
	}{
		{name: "raise over budget: refused with the fraction that fits", old: "0.70", new: "0.90", report: report(),
			err: "deployment ai-dev/vllm-server at 0.90 (10.8Gi for 1 pod(s)) makes the expected VRAM on homelabai up to 20.8Gi of 12Gi: CUDA out of memory when every workload is active; lower another workload first (gpuslice status lists the expected VRAM), choose at most 0.16, or pass --allow-overcommit"},
		{name: "raise over budget, allowed: a note", old: "0.70", new: "0.90", overAlloc: true, report: report(), note: "still a CUDA OOM risk"},
		{name: "lowering is never refused, but still over budget: a note", old: "0.70", new: "0.60", report: report(), note: "up to 17.2Gi of 12Gi"},
		{name: "raise within budget", old: "0.30", new: "0.40", report: func() *ledger.Report {
			r := report()
			r.Nodes[0].VRAM.MaxBytes = 3*gib + 3686<<20
			r.Nodes[0].Workloads[1].Memory = mem(3686 << 20)
			return r
		}()},
		{name: "no pods (released): nothing to add", old: "0.30", new: "0.90", report: func() *ledger.Report {
			r := report()
			r.Nodes[0].Workloads = r.Nodes[0].Workloads[:1]
			return r
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := MemoryResult{Workload: vllm, Fraction: tc.new, Node: "homelabai", GPUMemoryBytes: 12 * gib,
				Settings: []MemorySetting{{Old: tc.old, New: tc.new, OldBytes: fractionBytes(tc.old, 12*gib), NewBytes: fractionBytes(tc.new, 12*gib)}}}
			err := res.checkBudget(tc.report, tc.overAlloc)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v\nwant  %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if notes := strings.Join(res.Notes, "\n"); tc.note == "" && notes != "" || !strings.Contains(notes, tc.note) {
				t.Errorf("notes %q, want %q", notes, tc.note)
			}
		})
	}
}
