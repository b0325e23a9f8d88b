package inject

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// TestMutateGolden applies the patch to the raw JSON the API server would
// send and compares the result with the pod the seed describes; the inputs
// carry fields this client library does not know, which must survive.
func TestMutateGolden(t *testing.T) {
	cases := []struct {
		name, namespace string
		warnings        []string
	}{
		{"plex", "media", []string{
			"gpuslice: mounted /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm into plex",
			"gpuslice: set runtimeClassName nvidia (profile nvidia)",
		}},
		{"vllm", "ai-dev", []string{
			"gpuslice: mounted /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm into vllm",
			"gpuslice: added 2 nvidia.com/gpu.shared (limits+requests) to vllm",
			// The seed's vLLM states NVIDIA_VISIBLE_DEVICES=all itself.
			`gpuslice: NVIDIA_VISIBLE_DEVICES="all" in vllm overrides the device plugin's GPU; remove it`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, cfg := range []*Config{DefaultConfig("gpu-system"), exampleConfig(t)} {
				raw := readTestdata(t, "pods/"+tc.name+".json")
				d, patched, err := roundTrip(cfg, tc.namespace, raw, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !d.Allowed {
					t.Fatalf("denied: %s", d.Message)
				}
				jsonEqual(t, patched, readTestdata(t, "pods/"+tc.name+".patched.json"))
				if !slices.Equal(d.Warnings, tc.warnings) {
					t.Errorf("warnings\n got %q\nwant %q", d.Warnings, tc.warnings)
				}
				if !slices.Equal(d.Profiles, []string{"nvidia"}) {
					t.Errorf("profiles = %q", d.Profiles)
				}
			}
		})
	}
}

// Pod builders: typed pods are marshalled to the JSON the API server would send.

type podOpt func(*corev1.Pod)

func newPod(opts ...podOpt) *corev1.Pod {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	for _, o := range opts {
		o(pod)
	}
	return pod
}

func annotated(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func containers(cs ...corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers = cs }
}

func initContainers(cs ...corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.InitContainers = cs }
}

func volumes(vs ...corev1.Volume) podOpt {
	return func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, vs...) }
}

func runtimeClass(name string) podOpt {
	return func(p *corev1.Pod) { p.Spec.RuntimeClassName = &name }
}

func hostPathVolume(name, path string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}}}
}

func emptyDirVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func container(name string, opts ...func(*corev1.Container)) corev1.Container {
	c := corev1.Container{Name: name, Image: "busybox"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func mount(volume, path string) func(*corev1.Container) {
	return func(c *corev1.Container) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: path})
	}
}

func env(name, value string) func(*corev1.Container) {
	return func(c *corev1.Container) { c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value}) }
}

func quantity(side, name, value string) func(*corev1.Container) {
	return func(c *corev1.Container) {
		list := &c.Resources.Limits
		if side == "requests" {
			list = &c.Resources.Requests
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[corev1.ResourceName(name)] = resource.MustParse(value)
	}
}

// Assertions on the patched pod.

func mountsOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, vm := range c.VolumeMounts {
		m[vm.MountPath] = vm.Name
	}
	return m
}

func volumeNames(p *corev1.Pod) []string {
	var names []string
	for _, v := range p.Spec.Volumes {
		names = append(names, v.Name)
	}
	return names
}

func wantVolumes(names ...string) func(*testing.T, *corev1.Pod, Decision) {
	return func(t *testing.T, p *corev1.Pod, _ Decision) {
		t.Helper()
		if got := volumeNames(p); !slices.Equal(got, names) {
			t.Errorf("volumes = %q, want %q", got, names)
		}
	}
}

func wantMounts(containerName string, want map[string]string) func(*testing.T, *corev1.Pod, Decision) {
	return func(t *testing.T, p *corev1.Pod, _ Decision) {
		t.Helper()
		all := append(append(slices.Clone(p.Spec.Containers), p.Spec.InitContainers...), ephemeral(p)...)
		for _, c := range all {
			if c.Name != containerName {
				continue
			}
			got := mountsOf(c)
			if len(got) != len(want) {
				t.Errorf("container %s mounts = %v, want %v", containerName, got, want)
			}
			for path, vol := range want {
				if got[path] != vol {
					t.Errorf("container %s mount %s = %q, want %q", containerName, path, got[path], vol)
				}
			}
			return
		}
		t.Errorf("no container %s", containerName)
	}
}

func ephemeral(p *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, e := range p.Spec.EphemeralContainers {
		out = append(out, corev1.Container(e.EphemeralContainerCommon))
	}
	return out
}

func wantRuntimeClass(want string) func(*testing.T, *corev1.Pod, Decision) {
	return func(t *testing.T, p *corev1.Pod, _ Decision) {
		t.Helper()
		got := ""
		if p.Spec.RuntimeClassName != nil {
			got = *p.Spec.RuntimeClassName
		}
		if got != want {
			t.Errorf("runtimeClassName = %q, want %q", got, want)
		}
	}
}

func wantShares(containerName, limit, request string) func(*testing.T, *corev1.Pod, Decision) {
	return func(t *testing.T, p *corev1.Pod, _ Decision) {
		t.Helper()
		for _, c := range p.Spec.Containers {
			if c.Name != containerName {
				continue
			}
			for side, want := range map[string]string{"limits": limit, "requests": request} {
				list := c.Resources.Limits
				if side == "requests" {
					list = c.Resources.Requests
				}
				got := ""
				if q, ok := list[workload.SharedResource]; ok {
					got = q.String()
				}
				if got != want {
					t.Errorf("container %s %s[%s] = %q, want %q", containerName, side, workload.SharedResource, got, want)
				}
			}
		}
	}
}

func wantEnv(containerName string, want ...string) func(*testing.T, *corev1.Pod, Decision) {
	return func(t *testing.T, p *corev1.Pod, _ Decision) {
		t.Helper()
		for _, c := range p.Spec.Containers {
			if c.Name != containerName {
				continue
			}
			var got []string
			for _, e := range c.Env {
				got = append(got, e.Name+"="+e.Value)
			}
			if !slices.Equal(got, want) {
				t.Errorf("container %s env = %q, want %q", containerName, got, want)
			}
		}
	}
}

func wantProfiles(names ...string) func(*testing.T, *corev1.Pod, Decision) {
	return func(t *testing.T, _ *corev1.Pod, d Decision) {
		t.Helper()
		if !slices.Equal(d.Profiles, names) {
			t.Errorf("profiles = %q, want %q", d.Profiles, names)
		}
	}
}

func wantPatchPaths(paths ...string) func(*testing.T, *corev1.Pod, Decision) {
	return func(t *testing.T, _ *corev1.Pod, d Decision) {
		t.Helper()
		var got []string
		for _, op := range d.Patch {
			got = append(got, op.Path)
		}
		if !slices.Equal(got, paths) {
			t.Errorf("patch paths = %q, want %q", got, paths)
		}
	}
}

var nvidiaMounts = map[string]string{"/dev/nvidia0": "nvidia0", "/dev/nvidiactl": "nvidiactl", "/dev/nvidia-uvm": "nvidia-uvm"}

func TestMutate(t *testing.T) {
	type check = func(*testing.T, *corev1.Pod, Decision)
	twoContainers := containers(container("vllm"), container("sidecar"))
	conflictingConfig := &Config{Profiles: []Profile{
		{Name: "a", Devices: []Device{{Name: "dev", HostPath: "/dev/a"}}},
		{Name: "b", Devices: []Device{{Name: "dev", HostPath: "/dev/b"}}},
	}}
	runtimeConfig := &Config{Profiles: []Profile{
		{Name: "none", Devices: []Device{{Name: "x", HostPath: "/dev/x"}}},
		{Name: "first", Devices: []Device{{Name: "y", HostPath: "/dev/y"}}, RuntimeClassName: "first"},
		{Name: "second", Devices: []Device{{Name: "z", HostPath: "/dev/z"}}, RuntimeClassName: "second"},
	}}
	cases := []struct {
		name      string
		namespace string // default "media"
		cfg       *Config
		pod       *corev1.Pod
		reason    string   // expected denial; "" means allowed
		message   []string // substrings of the denial message
		warnings  []string // substrings, each in some warning
		checks    []check
	}{
		{
			name:   "unannotated pod is untouched",
			pod:    newPod(annotated("other", "x")),
			checks: []check{wantPatchPaths()},
		},
		{
			name:     "gpu-shares-container alone only warns",
			pod:      newPod(annotated(workload.AnnotationSharesContainer, "app")),
			warnings: []string{"gpu-shares-container ignored"},
			checks:   []check{wantPatchPaths()},
		},
		{
			name: "explicit runtime class is kept and reported",
			pod:  newPod(annotated(workload.AnnotationProfiles, "nvidia"), runtimeClass("runc")),
			warnings: []string{
				"kept runtimeClassName runc; profile nvidia would set nvidia",
				"mounted /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm into app",
			},
			checks: []check{wantRuntimeClass("runc"), wantMounts("app", nvidiaMounts)},
		},
		{
			name:   "empty runtime class counts as unset",
			pod:    newPod(annotated(workload.AnnotationProfiles, "nvidia"), runtimeClass("")),
			checks: []check{wantRuntimeClass("nvidia")},
		},
		{
			name: "init containers get mounts, ephemeral containers do not",
			pod: newPod(annotated(workload.AnnotationProfiles, "nvidia"), initContainers(container("setup")), func(p *corev1.Pod) {
				p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug"}}}
			}),
			warnings: []string{"into app, setup"},
			checks: []check{
				wantMounts("app", nvidiaMounts), wantMounts("setup", nvidiaMounts), wantMounts("debug", nil),
				wantVolumes("nvidia0", "nvidiactl", "nvidia-uvm"),
			},
		},
		{
			name:     "existing hostPath volume for a device is reused under its name",
			pod:      newPod(annotated(workload.AnnotationProfiles, "nvidia"), volumes(emptyDirVolume("data"), hostPathVolume("gpu", "/dev/nvidia0/"))),
			warnings: []string{`reused pod volume gpu for /dev/nvidia0`},
			checks: []check{
				wantVolumes("data", "gpu", "nvidiactl", "nvidia-uvm"),
				wantMounts("app", map[string]string{"/dev/nvidia0": "gpu", "/dev/nvidiactl": "nvidiactl", "/dev/nvidia-uvm": "nvidia-uvm"}),
				wantPatchPaths("/spec/volumes/-", "/spec/volumes/-", "/spec/containers/0/volumeMounts", "/spec/runtimeClassName"),
			},
		},
		{
			name: "existing mount at a device path is kept, volume only added where needed",
			pod: newPod(annotated(workload.AnnotationProfiles, "nvidia"), volumes(emptyDirVolume("fake")), containers(
				container("a", mount("fake", "/dev/nvidia0")),
				container("b", mount("fake", "/dev/nvidia0"), mount("fake", "/data")),
			)),
			warnings: []string{"kept existing mount at /dev/nvidia0 (other volume) in a, b"},
			checks: []check{
				wantVolumes("fake", "nvidiactl", "nvidia-uvm"),
				wantMounts("a", map[string]string{"/dev/nvidia0": "fake", "/dev/nvidiactl": "nvidiactl", "/dev/nvidia-uvm": "nvidia-uvm"}),
				wantMounts("b", map[string]string{"/dev/nvidia0": "fake", "/data": "fake", "/dev/nvidiactl": "nvidiactl", "/dev/nvidia-uvm": "nvidia-uvm"}),
			},
		},
		{
			name:    "volume name collision is denied naming both sides",
			pod:     newPod(annotated(workload.AnnotationProfiles, "nvidia"), volumes(emptyDirVolume("nvidia0"))),
			reason:  ReasonVolumeConflict,
			message: []string{`volume "nvidia0" is emptyDir`, "profile nvidia", "hostPath /dev/nvidia0", "rename the pod's volume"},
		},
		{
			name:    "collision between two profiles of a hand-built config is denied",
			cfg:     conflictingConfig,
			pod:     newPod(annotated(workload.AnnotationProfiles, "a,b")),
			reason:  ReasonVolumeConflict,
			message: []string{`"dev"`, "hostPath /dev/a, device of profile a", "/dev/b of profile b", "injector config"},
		},
		{
			name: "several profiles, case and spaces tolerated, shared devices once",
			pod:  newPod(annotated(workload.AnnotationProfiles, " NVIDIA , nvidia1,nvidia,, ")),
			checks: []check{
				wantProfiles("nvidia", "nvidia1"),
				wantVolumes("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia1"),
				wantMounts("app", map[string]string{"/dev/nvidia0": "nvidia0", "/dev/nvidiactl": "nvidiactl", "/dev/nvidia-uvm": "nvidia-uvm", "/dev/nvidia1": "nvidia1"}),
				wantRuntimeClass("nvidia"),
			},
		},
		{
			name: "intel-qsv mounts /dev/dri as a Directory and sets no runtime class",
			pod:  newPod(annotated(workload.AnnotationProfiles, "intel-qsv")),
			checks: []check{
				wantVolumes("dri"), wantRuntimeClass(""),
				func(t *testing.T, p *corev1.Pod, _ Decision) {
					if typ := p.Spec.Volumes[0].HostPath.Type; typ == nil || *typ != corev1.HostPathDirectory {
						t.Errorf("dri type = %v, want Directory", typ)
					}
				},
			},
		},
		{
			name:   "runtime class comes from the first profile, in annotation order, that has one",
			cfg:    runtimeConfig,
			pod:    newPod(annotated(workload.AnnotationProfiles, "none, second, first")),
			checks: []check{wantRuntimeClass("second"), wantVolumes("x", "z", "y")},
		},
		{
			name:    "unknown profile lists the known ones",
			pod:     newPod(annotated(workload.AnnotationProfiles, "nvidia, AMD")),
			reason:  ReasonUnknownProfile,
			message: []string{`"AMD"`, "known profiles: intel-qsv, nvidia, nvidia-tools, nvidia1"},
		},
		{
			name:    "empty annotation is denied with the fix",
			pod:     newPod(annotated(workload.AnnotationProfiles, "")),
			reason:  ReasonEmptyAnnotation,
			message: []string{"names no profile", "comma-separated list", "known: intel-qsv, nvidia"},
		},
		{
			name:   "only commas is empty too",
			pod:    newPod(annotated(workload.AnnotationProfiles, " , ,")),
			reason: ReasonEmptyAnnotation,
		},
		{
			name:      "excluded namespace denies profiles",
			namespace: "kube-system",
			pod:       newPod(annotated(workload.AnnotationProfiles, "nvidia")),
			reason:    ReasonNamespaceNotAllowed,
			message:   []string{`namespace "kube-system" is excluded`, "excludedNamespaces"},
		},
		{
			name:      "webhook namespace denies gpu-shares",
			namespace: "gpu-system",
			pod:       newPod(annotated(workload.AnnotationShares, "1")),
			reason:    ReasonNamespaceNotAllowed,
			message:   []string{`"gpu-system"`, "gpu-shares annotation"},
		},
		{
			name:      "profile namespace allow-list",
			namespace: "default",
			pod:       newPod(annotated(workload.AnnotationProfiles, "nvidia,intel-qsv")),
			reason:    ReasonNamespaceNotAllowed,
			message:   []string{"intel-qsv (allowed in: media)", `namespace "default"`},
		},
		{
			name: "shares go to the first container with env",
			pod:  newPod(annotated(workload.AnnotationShares, " 2 "), twoContainers),
			warnings: []string{"added 2 nvidia.com/gpu.shared (limits+requests) to vllm", "set env NVIDIA_DRIVER_CAPABILITIES in vllm",
				"set runtimeClassName nvidia (gpu-shares)"},
			checks: []check{
				wantShares("vllm", "2", "2"), wantShares("sidecar", "", ""),
				// No NVIDIA_VISIBLE_DEVICES: the device plugin's assignment must reach the container.
				wantEnv("vllm", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"),
				wantEnv("sidecar"), wantVolumes(),
				// K3s's default runtime is runc: without nvidia a share gives no GPU.
				wantRuntimeClass("nvidia"),
				wantPatchPaths("/spec/runtimeClassName", "/spec/containers/0/resources", "/spec/containers/0/env"),
			},
		},
		{
			name:     "shares keep the pod's runtime class",
			pod:      newPod(annotated(workload.AnnotationShares, "1"), runtimeClass("nvidia-cdi")),
			warnings: []string{"kept runtimeClassName nvidia-cdi; gpu-shares would set nvidia"},
			checks:   []check{wantRuntimeClass("nvidia-cdi")},
		},
		{
			name:     "shares with a profile take the profile's runtime class",
			pod:      newPod(annotated(workload.AnnotationProfiles, "nvidia-tools", workload.AnnotationShares, "1")),
			cfg:      mustParse(t, header+profile("nvidia-tools", "  runtimeClassName: nvidia-tools-rc\n", "{name: nvidia-modeset, hostPath: /dev/nvidia-modeset}")),
			warnings: []string{"set runtimeClassName nvidia-tools-rc (profile nvidia-tools)"},
			checks:   []check{wantRuntimeClass("nvidia-tools-rc")},
		},
		{
			name:   "shares set no runtime class when the configuration says none",
			pod:    newPod(annotated(workload.AnnotationShares, "1")),
			cfg:    mustParse(t, header+"hybrid: {runtimeClassName: \"\"}\n"),
			checks: []check{wantRuntimeClass(""), wantPatchPaths("/spec/containers/0/resources", "/spec/containers/0/env")},
		},
		{
			name:     "a pod's own NVIDIA_VISIBLE_DEVICES beside shares is kept and reported",
			pod:      newPod(annotated(workload.AnnotationShares, "1"), containers(container("ollama", env("NVIDIA_VISIBLE_DEVICES", "all")))),
			warnings: []string{`NVIDIA_VISIBLE_DEVICES="all" in ollama overrides the device plugin's GPU; remove it`},
			checks:   []check{wantEnv("ollama", "NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_DRIVER_CAPABILITIES=compute,utility")},
		},
		{
			name: "shares go to the named container, next to other resources",
			pod: newPod(annotated(workload.AnnotationShares, "3", workload.AnnotationSharesContainer, "sidecar"), containers(
				container("vllm"), container("sidecar", quantity("limits", "cpu", "1"), env("OTHER", "x")),
			)),
			checks: []check{
				wantShares("sidecar", "3", "3"), wantShares("vllm", "", ""),
				wantEnv("sidecar", "OTHER=x", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"),
				wantPatchPaths("/spec/runtimeClassName", "/spec/containers/1/resources/limits/nvidia.com~1gpu.shared", "/spec/containers/1/resources/requests",
					"/spec/containers/1/env/-"),
			},
		},
		{
			name: "conflicting values are kept and reported",
			pod: newPod(annotated(workload.AnnotationShares, "2"), containers(container("vllm",
				quantity("limits", workload.SharedResource, "1"), env("NVIDIA_DRIVER_CAPABILITIES", "compute,video,utility"),
			))),
			warnings: []string{
				"kept limits nvidia.com/gpu.shared=1 on vllm; gpu-shares asks for 2",
				`kept NVIDIA_DRIVER_CAPABILITIES="compute,video,utility" in vllm`,
			},
			checks: []check{
				wantShares("vllm", "1", ""),
				wantEnv("vllm", "NVIDIA_DRIVER_CAPABILITIES=compute,video,utility"),
			},
		},
		{
			name:   "the missing one of request and limit is added when the other matches",
			pod:    newPod(annotated(workload.AnnotationShares, "2"), containers(container("vllm", quantity("requests", workload.SharedResource, "2000m")))),
			checks: []check{wantShares("vllm", "2", "2"), wantPatchPaths("/spec/runtimeClassName", "/spec/containers/0/resources/limits", "/spec/containers/0/env")},
		},
		{
			name:    "invalid shares",
			pod:     newPod(annotated(workload.AnnotationShares, "1.5")),
			reason:  ReasonInvalidShares,
			message: []string{`gpu-shares="1.5" is not a positive whole number`, `"2"`},
		},
		{
			name:    "unknown shares container lists the containers",
			pod:     newPod(annotated(workload.AnnotationShares, "1", workload.AnnotationSharesContainer, "setup"), twoContainers, initContainers(container("setup"))),
			reason:  ReasonUnknownContainer,
			message: []string{`"setup"`, "containers are: vllm, sidecar"},
		},
		{
			name:    "shares need a container",
			pod:     newPod(annotated(workload.AnnotationShares, "1"), containers()),
			reason:  ReasonUnknownContainer,
			message: []string{"has none"},
		},
		{
			name: "hybrid with devices, like the seed's vLLM",
			pod:  newPod(annotated(workload.AnnotationProfiles, "nvidia", workload.AnnotationShares, "2"), containers(container("vllm"))),
			checks: []check{
				wantShares("vllm", "2", "2"), wantMounts("vllm", nvidiaMounts), wantRuntimeClass("nvidia"), wantProfiles("nvidia"),
			},
		},
		{
			name:   "hostile container names stay out of warnings verbatim",
			pod:    newPod(annotated(workload.AnnotationProfiles, "nvidia"), containers(container("a\nb\u00e9"+strings.Repeat("x", 200)))),
			checks: []check{wantVolumes("nvidia0", "nvidiactl", "nvidia-uvm")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == nil {
				cfg = exampleConfig(t)
			}
			namespace := tc.namespace
			if namespace == "" {
				namespace = "media"
			}
			raw, err := json.Marshal(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			d, patched, err := roundTrip(cfg, namespace, raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d.Reason != tc.reason {
				t.Fatalf("reason = %q, want %q (message %q)", d.Reason, tc.reason, d.Message)
			}
			for _, s := range tc.message {
				if !strings.Contains(d.Message, s) {
					t.Errorf("message %q lacks %q", d.Message, s)
				}
			}
			for _, s := range tc.warnings {
				if !slices.ContainsFunc(d.Warnings, func(w string) bool { return strings.Contains(w, s) }) {
					t.Errorf("warnings %q lack %q", d.Warnings, s)
				}
			}
			if !d.Allowed {
				return
			}
			pod, err := DecodePod(patched)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				c(t, pod, d)
			}
		})
	}
}

func TestMutateInvalidShares(t *testing.T) {
	cfg := DefaultConfig("gpu-system")
	for _, v := range []string{"", " ", "0", "-1", "+2", "two", "1.5", "2e3", "1Gi", "9999999999"} {
		d := cfg.Mutate("ai", newPod(annotated(workload.AnnotationShares, v)))
		if d.Allowed || d.Reason != ReasonInvalidShares {
			t.Errorf("gpu-shares=%q: allowed=%v reason=%q, want denied %s", v, d.Allowed, d.Reason, ReasonInvalidShares)
		}
	}
}

func TestEscapeKey(t *testing.T) {
	for in, want := range map[string]string{"nvidia.com/gpu.shared": "nvidia.com~1gpu.shared", "a~b/c": "a~0b~1c", "~1": "~01"} {
		if got := escapeKey(in); got != want {
			t.Errorf("escapeKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWarningIsShortAndPrintable(t *testing.T) {
	w := warning("%s", "caf\u00e9\n"+strings.Repeat("x", 300))
	if len(w) != 119 || !strings.HasPrefix(w, "gpuslice: caf??xxx") || !strings.HasSuffix(w, "x...") {
		t.Errorf("warning = %q (%d bytes)", w, len(w))
	}
}

func TestNilInputs(t *testing.T) {
	var cfg *Config
	if d := cfg.Mutate("media", newPod(annotated(workload.AnnotationProfiles, "nvidia"))); !d.Allowed || len(d.Patch) == 0 {
		t.Errorf("nil config should act as the default: %+v", d)
	}
	if d := DefaultConfig("x").Mutate("media", nil); !d.Allowed || len(d.Patch) > 0 {
		t.Errorf("nil pod: %+v", d)
	}
}

func TestPatchJSON(t *testing.T) {
	cfg := DefaultConfig("gpu-system")
	raw := readTestdata(t, "pods/plex.json")
	pod, err := DecodePod(raw)
	if err != nil {
		t.Fatal(err)
	}
	data, err := cfg.Mutate("media", pod).PatchJSON()
	if err != nil || !strings.HasPrefix(string(data), `[{"op":"add","path":"/spec/volumes","value":[{"name":"nvidia0","hostPath":{"path":"/dev/nvidia0"}}`) {
		t.Errorf("PatchJSON = %s, %v", data, err)
	}
	if data, err := cfg.Mutate("media", newPod()).PatchJSON(); data != nil || err != nil {
		t.Errorf("no patch should give nil JSON, got %s, %v", data, err)
	}
}

func TestDecodePodIsStrictAboutKeys(t *testing.T) {
	for _, raw := range []string{
		`{"spec":{"containers":[]},"spec":{}}`,              // duplicate: patch and decoder would disagree
		`{"spec":{"containers":[{"name":"a","name":"b"}]}}`, // duplicate inside a container
	} {
		if _, err := DecodePod([]byte(raw)); err == nil {
			t.Errorf("DecodePod(%s) accepted duplicate fields", raw)
		}
	}
	pod, err := DecodePod([]byte(`{"Spec":{"containers":[{"name":"a"}]}}`))
	if err != nil || len(pod.Spec.Containers) != 0 {
		t.Errorf("DecodePod must match keys case-sensitively: %+v, %v", pod, err)
	}
}

func TestMutatePodSecurity(t *testing.T) {
	cfg := DefaultConfig("gpu-system")
	cases := []struct {
		name      string
		namespace Namespace
		pod       *corev1.Pod
		reason    string
		message   []string
	}{
		{
			name:      "devices where hostPath is forbidden are denied with the fix",
			namespace: Namespace{Name: "ai", HostPathForbidden: true},
			pod:       newPod(annotated(workload.AnnotationProfiles, "nvidia")),
			reason:    ReasonPodSecurity,
			message: []string{`namespace "ai" enforces Pod Security baseline or restricted`, "profile(s) nvidia",
				"kubectl label namespace ai pod-security.kubernetes.io/enforce=privileged --overwrite", "request GPU shares only (gpu-shares)"},
		},
		{
			name:      "hybrid pods are denied too",
			namespace: Namespace{Name: "ai-dev", HostPathForbidden: true},
			pod:       newPod(annotated(workload.AnnotationProfiles, "nvidia", workload.AnnotationShares, "2")),
			reason:    ReasonPodSecurity,
		},
		{
			name:      "shares alone need no hostPath",
			namespace: Namespace{Name: "ai", HostPathForbidden: true},
			pod:       newPod(annotated(workload.AnnotationShares, "1")),
		},
		{
			name:      "devices where hostPath is allowed",
			namespace: Namespace{Name: "media"},
			pod:       newPod(annotated(workload.AnnotationProfiles, "nvidia")),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := cfg.MutateIn(tc.namespace, tc.pod)
			if d.Reason != tc.reason || d.Allowed != (tc.reason == "") {
				t.Fatalf("allowed=%v reason=%q (message %q), want reason %q", d.Allowed, d.Reason, d.Message, tc.reason)
			}
			for _, s := range tc.message {
				if !strings.Contains(d.Message, s) {
					t.Errorf("message %q lacks %q", d.Message, s)
				}
			}
		})
	}
}
