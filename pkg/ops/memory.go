package ops

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/podenv"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// MemoryOptions configure TuneMemory.
type MemoryOptions struct {
	// Fraction is the new GPU_MEMORY_UTILIZATION, written as given
	// ("0.6", "0.60"); it must be in (0, 1].
	Fraction string
	DryRun   bool
	// Now is the restart time; zero means time.Now().
	Now time.Time
	// NoBytes skips reading the whole cluster to put bytes on the
	// settings (the arbiter has its own estimate, and no need to list
	// Jobs cluster-wide).
	NoBytes bool
	// AllowOvercommit lets a raise through that makes the node's expected
	// VRAM exceed its GPU memory.
	AllowOvercommit bool
}

// MemoryResult is what TuneMemory changed, or would change with DryRun.
type MemoryResult struct {
	Workload workload.Ref    `json:"workload"`
	Variable string          `json:"variable"`
	Fraction string          `json:"fraction"`
	Settings []MemorySetting `json:"settings"`
	// Restarts are the workloads rolled out to read the new value: the
	// workload itself and every other one reading a changed ConfigMap key.
	Restarts []Restart `json:"restarts,omitempty"`
	// Affected read a changed ConfigMap in a way a restart does not serve
	// (a volume, which the kubelet refreshes in place); they are not
	// restarted.
	Affected []Affected `json:"affected,omitempty"`
	// Node and GPUMemoryBytes (per GPU) give the settings their bytes; 0
	// when unknown, with the reason in Notes.
	Node           string   `json:"node,omitempty"`
	GPUMemoryBytes int64    `json:"gpuMemoryBytes,omitempty"`
	Notes          []string `json:"notes,omitempty"`
	Changed        bool     `json:"changed"`
	DryRun         bool     `json:"dryRun,omitempty"`
}

// MemorySetting is one place the workload reads the variable from.
type MemorySetting struct {
	Container string `json:"container"`
	// ConfigMap is set when the value lives in a ConfigMap (under Key);
	// otherwise it is the env value Key in the pod template.
	ConfigMap string `json:"configMap,omitempty"`
	Key       string `json:"key"`
	Old       string `json:"old"`
	New       string `json:"new"`
	OldBytes  int64  `json:"oldBytes,omitempty"`
	NewBytes  int64  `json:"newBytes,omitempty"`
	Changed   bool   `json:"changed"`
}

// Where says where the setting lives.
func (s MemorySetting) Where() string {
	if s.ConfigMap != "" {
		return "ConfigMap " + s.ConfigMap + " key " + s.Key
	}
	return "env " + s.Key + " of container " + s.Container
}

// Restart is a workload rolled out as kubectl rollout restart does.
type Restart struct {
	Workload    workload.Ref `json:"workload"`
	Why         string       `json:"why"`
	RestartedAt string       `json:"restartedAt,omitempty"`
}

// Affected is a workload that reads a changed ConfigMap but is not
// restarted.
type Affected struct {
	Workload workload.Ref `json:"workload"`
	Why      string       `json:"why"`
}

// TuneMemory sets GPU_MEMORY_UTILIZATION where the workload reads it (the
// ConfigMap it takes it from, or its pod template's env) and restarts
// every Deployment and StatefulSet that reads the changed value, the
// workload first. Everything is checked before the first write; writes
// are one patch per object. A value already equal changes nothing.
func TuneMemory(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, opts MemoryOptions) (MemoryResult, error) {
	res := MemoryResult{Workload: ref, Variable: workload.EnvGPUMemoryUtilization, Fraction: opts.Fraction, DryRun: opts.DryRun}
	if _, err := workload.ParseFraction(opts.Fraction); err != nil {
		return res, err
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	w, err := getWorkload(ctx, cs, ref)
	if err != nil {
		return res, err
	}
	cms, err := readConfigMaps(ctx, cs, ref.Namespace, configMapNames(w.template))
	if err != nil {
		return res, err
	}
	if res.Settings, err = planMemory(w, cms, opts.Fraction); err != nil {
		return res, err
	}
	if !opts.NoBytes {
		report, err := snapshot.Ledger(ctx, cs, ledger.Options{})
		if err != nil {
			res.Notes = append(res.Notes, "bytes unknown: "+err.Error())
		}
		res.addBytes(report, w)
		if err := res.checkBudget(report, opts.AllowOvercommit); err != nil {
			return res, err
		}
	}

	for _, s := range res.Settings {
		res.Changed = res.Changed || s.Changed
	}
	if !res.Changed {
		return res, nil
	}
	targets := []*appsWorkload{w}
	res.Restarts = []Restart{{Workload: ref, Why: "its " + workload.EnvGPUMemoryUtilization + " changed"}}
	if keys := changedConfigMapKeys(res.Settings); len(keys) > 0 {
		all, err := listWorkloads(ctx, cs, ref.Namespace)
		if err != nil {
			return res, err
		}
		var others []*appsWorkload
		others, res.Restarts, res.Affected = readers(all, ref, keys, res.Restarts)
		targets = append(targets, others...)
	}
	// Refuse before the first write what kubectl rollout restart would.
	for i, t := range targets {
		ts, err := t.copy().restart(opts.Now)
		if err != nil {
			return res, err
		}
		res.Restarts[i].RestartedAt = ts
	}
	if opts.DryRun {
		return res, nil
	}
	return res, applyMemory(ctx, cs, w, cms, targets, &res, opts)
}

// applyMemory writes the ConfigMaps, then the workload (env and restart in
// one patch), then restarts the other readers. A failure says what was
// done and how to finish by hand.
func applyMemory(ctx context.Context, cs kubernetes.Interface, w *appsWorkload, cms map[string]*corev1.ConfigMap, targets []*appsWorkload, res *MemoryResult, opts MemoryOptions) error {
	var done []string
	restarted := 0
	fail := func(err error) error {
		if len(done) == 0 {
			return err
		}
		var todo []string
		for _, r := range res.Restarts[restarted:] {
			todo = append(todo, "kubectl rollout restart "+r.Workload.KubectlArgs())
		}
		return fmt.Errorf("%w; already done: %s; finish with: %s", err, strings.Join(done, ", "), strings.Join(todo, "; "))
	}
	for i, s := range res.Settings {
		if !s.Changed || s.ConfigMap == "" || slices.ContainsFunc(res.Settings[:i], func(p MemorySetting) bool { return p.ConfigMap == s.ConfigMap && p.Key == s.Key }) {
			continue
		}
		err := modifyConfigMap(ctx, cs, w.Namespace, s.ConfigMap, false, func(cm *corev1.ConfigMap) (bool, error) {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[s.Key] = opts.Fraction
			return true, nil
		})
		if err != nil {
			return fail(err)
		}
		done = append(done, fmt.Sprintf("ConfigMap %s/%s %s=%s", w.Namespace, s.ConfigMap, s.Key, opts.Fraction))
	}
	for i, t := range targets {
		err := modifyWorkload(ctx, cs, t.Ref, false, func(cur *appsWorkload) (bool, error) {
			if i == 0 {
				// Re-resolve on what is stored: a conflict retry may see a
				// changed template.
				settings, err := planMemory(cur, cms, opts.Fraction)
				if err != nil {
					return false, err
				}
				for _, s := range settings {
					if s.Changed && s.ConfigMap == "" {
						setEnv(cur, s.Container, s.Key, opts.Fraction)
					}
				}
			}
			_, err := cur.restart(opts.Now)
			return true, err
		})
		if err != nil {
			return fail(err)
		}
		done = append(done, "restarted "+t.Qualified())
		restarted++
	}
	return nil
}

// addBytes fills in what the settings mean in bytes of the node's GPU.
func (res *MemoryResult) addBytes(report *ledger.Report, w *appsWorkload) {
	if report == nil {
		return
	}
	p := place(report, w.Ref, w.template, "")
	if len(p.nodes) != 1 || p.nodes[0].GPUMemoryBytes == 0 {
		switch {
		case len(p.nodes) == 0:
			res.Notes = append(res.Notes, "bytes unknown: no GPU node found for "+w.Qualified())
		case len(p.nodes) > 1:
			res.Notes = append(res.Notes, "bytes unknown: "+w.Qualified()+" may run on any of "+strings.Join(p.names(), ", "))
		default:
			res.Notes = append(res.Notes, "bytes unknown: node "+p.nodes[0].Name+" does not say its GPU memory (label "+ledger.LabelGPUMemory+" or annotation "+workload.AnnotationNodeGPUMemory+")")
		}
		return
	}
	res.Node, res.GPUMemoryBytes = p.nodes[0].Name, p.nodes[0].GPUMemoryBytes
	for i := range res.Settings {
		s := &res.Settings[i]
		s.OldBytes, s.NewBytes = fractionBytes(s.Old, res.GPUMemoryBytes), fractionBytes(s.New, res.GPUMemoryBytes)
	}
}

// checkBudget refuses a raise that makes the node's expected VRAM (the
// ledger's potential maximum, with this workload at its new fraction)
// exceed the GPU's memory: the CUDA OOM time-slicing leaves open. A
// lowering, or a node whose memory is unknown, is never refused; one that
// stays over budget gets a note.
func (res *MemoryResult) checkBudget(report *ledger.Report, allowOvercommit bool) error {
	if report == nil || res.GPUMemoryBytes == 0 || len(res.Settings) == 0 {
		return nil
	}
	n := slices.IndexFunc(report.Nodes, func(n ledger.NodeReport) bool { return n.Name == res.Node })
	if n < 0 {
		return nil
	}
	node := &report.Nodes[n]
	avail := node.VRAM.AvailableBytes
	i := slices.IndexFunc(node.Workloads, func(wl ledger.Workload) bool {
		return wl.Namespace == res.Workload.Namespace && wl.Kind == res.Workload.Kind && wl.Name == res.Workload.Name
	})
	if avail == 0 || i < 0 {
		return nil // no pods to count (released, pending): nothing to add up
	}
	row := node.Workloads[i]
	var oldMax int64
	if row.Memory != nil {
		oldMax = row.Memory.Max.Value()
	}
	s := res.Settings[0]
	newMax := s.NewBytes * int64(row.Pods)
	total := node.VRAM.MaxBytes - oldMax + newMax
	if total <= avail {
		return nil
	}
	over := fmt.Sprintf("%s at %s (%s for %d pod(s)) makes the expected VRAM on %s up to %s of %s",
		res.Workload.Qualified(), res.Fraction, ledger.FormatBytes(newMax), row.Pods, node.Name, ledger.FormatBytes(total), ledger.FormatBytes(avail))
	if s.NewBytes <= s.OldBytes || allowOvercommit {
		res.Notes = append(res.Notes, over+": still a CUDA OOM risk if every workload is active (gpuslice status)")
		return nil
	}
	return fmt.Errorf("%s: CUDA out of memory when every workload is active; lower another workload first (gpuslice status lists the expected VRAM), choose at most %s, or pass --allow-overcommit",
		over, maxFraction(avail-(node.VRAM.MaxBytes-oldMax), int64(row.Pods), res.GPUMemoryBytes))
}

// maxFraction is the largest GPU_MEMORY_UTILIZATION (two decimals, down)
// whose pods fit in room bytes; "0" when none does.
func maxFraction(room, pods, gpuMemory int64) string {
	if room <= 0 || pods <= 0 || gpuMemory <= 0 {
		return "0 (no room left)"
	}
	f := math.Floor(float64(room)/float64(pods)/float64(gpuMemory)*100) / 100
	return strconv.FormatFloat(min(f, 1), 'f', -1, 64)
}

// fractionBytes is f of the GPU's memory in whole MiB, as the ledger
// counts it; 0 for an invalid fraction.
func fractionBytes(fraction string, gpuMemory int64) int64 {
	f, err := workload.ParseFraction(fraction)
	if err != nil {
		return 0
	}
	const mebi = 1 << 20
	return int64(math.Round(f*float64(gpuMemory)/mebi)) * mebi
}

// source is where one container gets the variable from.
type source struct {
	container, configMap, key, value string
	// unsupported says why gpuslice cannot change it (a Secret, a field
	// reference, a missing ConfigMap).
	unsupported string
}

// findSources resolves the variable in each container the way the kubelet
// does (podenv.Resolve): envFrom sources in order, then env entries, the
// last one winning. An env entry wins even when gpuslice cannot write what
// it refers to. looked lists where it searched, for the message when it
// finds nothing.
func findSources(tmpl *corev1.PodTemplateSpec, cms map[string]*corev1.ConfigMap) (sources []source, looked []string) {
	const name = workload.EnvGPUMemoryUtilization
	configMaps := func(cmName string) *corev1.ConfigMap { return cms[cmName] }
	for ci := range tmpl.Spec.Containers {
		c := &tmpl.Spec.Containers[ci]
		var cur *source
		looked = append(looked, "env of container "+c.Name)
		for _, s := range podenv.Resolve(tmpl.Namespace, c, configMaps, name) {
			switch {
			case s.Kind == podenv.EnvFrom && s.State == podenv.NoPrefix:
				looked = append(looked, fmt.Sprintf("ConfigMap %s (envFrom with prefix %s)", s.Object, s.Prefix))
			case s.Kind == podenv.EnvFrom && s.State == podenv.NoConfigMap:
				looked = append(looked, "ConfigMap "+s.Object+" (envFrom; not found)")
			case s.Kind == podenv.EnvFrom && s.State == podenv.NoKey:
				looked = append(looked, "ConfigMap "+s.Object+" (envFrom; no key "+s.Key+")")
			case s.Kind == podenv.EnvFromSecret:
				looked = append(looked, "Secret "+s.Object+" (envFrom; gpuslice does not read Secrets)")
			case s.Kind == podenv.Env:
				cur = &source{container: c.Name, key: name, value: s.Value}
			case s.Kind == podenv.ConfigMapKeyRef && s.State == podenv.NoConfigMap:
				cur = &source{container: c.Name, unsupported: fmt.Sprintf("env %s of container %s comes from ConfigMap %s key %s, which does not exist: create it", name, c.Name, s.Object, s.Key)}
			case s.Kind == podenv.EnvFrom, s.Kind == podenv.ConfigMapKeyRef:
				// A key the ConfigMap lacks is added there.
				cur = &source{container: c.Name, configMap: s.Object, key: s.Key, value: s.Value}
			case s.Kind == podenv.SecretKeyRef:
				cur = &source{container: c.Name, unsupported: fmt.Sprintf("env %s of container %s comes from Secret %s key %s, which gpuslice does not write: change it there and run kubectl rollout restart", name, c.Name, s.Object, s.Key)}
			default:
				cur = &source{container: c.Name, unsupported: fmt.Sprintf("env %s of container %s comes from a field or resource reference: set a value instead", name, c.Name)}
			}
		}
		if cur != nil {
			sources = append(sources, *cur)
			continue
		}
		for _, arg := range append(slices.Clone(c.Command), c.Args...) {
			if strings.HasPrefix(arg, "--gpu-memory-utilization") {
				looked = append(looked, "args of container "+c.Name+" (they set --gpu-memory-utilization themselves; pass $("+name+") there)")
				break
			}
		}
	}
	return sources, looked
}

// planMemory decides the settings to change: one per container reading
// the variable, a ConfigMap key read by several containers once.
func planMemory(w *appsWorkload, cms map[string]*corev1.ConfigMap, fraction string) ([]MemorySetting, error) {
	const name = workload.EnvGPUMemoryUtilization
	sources, looked := findSources(w.template, cms)
	if len(sources) == 0 {
		return nil, fmt.Errorf("%s does not read %s: looked at %s. Add it to the pod template (kubectl set env %s %s=%s) or to the ConfigMap it reads, and pass it to vLLM as --gpu-memory-utilization=$(%s)",
			w.Qualified(), name, strings.Join(looked, ", "), w.KubectlArgs(), name, fraction, name)
	}
	var out []MemorySetting
	for _, s := range sources {
		if s.unsupported != "" {
			return nil, fmt.Errorf("cannot set %s of %s: %s", name, w.Qualified(), s.unsupported)
		}
		if s.configMap != "" && slices.ContainsFunc(out, func(p MemorySetting) bool { return p.ConfigMap == s.configMap && p.Key == s.key }) {
			continue
		}
		out = append(out, MemorySetting{Container: s.container, ConfigMap: s.configMap, Key: s.key, Old: s.value, New: fraction, Changed: !sameFraction(s.value, fraction)})
	}
	return out, nil
}

// sameFraction compares numerically, so "0.60" is "0.6".
func sameFraction(a, b string) bool {
	fa, errA := strconv.ParseFloat(strings.TrimSpace(a), 64)
	fb, errB := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if errA != nil || errB != nil {
		return a == b
	}
	return fa == fb
}

// setEnv sets the last env entry called name in the container: the one the
// kubelet uses.
func setEnv(w *appsWorkload, container, name, value string) {
	for ci := range w.template.Spec.Containers {
		c := &w.template.Spec.Containers[ci]
		if c.Name != container {
			continue
		}
		for ei := len(c.Env) - 1; ei >= 0; ei-- {
			if c.Env[ei].Name == name && c.Env[ei].ValueFrom == nil {
				c.Env[ei].Value = value
				return
			}
		}
	}
}

type cmKey struct{ configMap, key string }

func changedConfigMapKeys(settings []MemorySetting) []cmKey {
	var out []cmKey
	for _, s := range settings {
		if k := (cmKey{s.ConfigMap, s.Key}); s.Changed && s.ConfigMap != "" && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// readers finds, among a namespace's workloads, the others that read one
// of the changed ConfigMap keys. Those reading it as environment (envFrom,
// or an env entry naming the key) only see the new value in new pods, so
// they are restarted; those mounting it as a volume get the file updated
// in place by the kubelet and are only listed.
func readers(all []*appsWorkload, target workload.Ref, keys []cmKey, restarts []Restart) (others []*appsWorkload, _ []Restart, affected []Affected) {
	for _, o := range all {
		if o.Ref == target {
			continue
		}
		var envWhy, volWhy []string
		for _, k := range keys {
			for _, c := range o.template.Spec.Containers {
				for _, ef := range c.EnvFrom {
					if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == k.configMap {
						envWhy = appendNew(envWhy, "reads ConfigMap "+k.configMap+" (envFrom)")
					}
				}
				for _, e := range c.Env {
					if r := e.ValueFrom; r != nil && r.ConfigMapKeyRef != nil && r.ConfigMapKeyRef.Name == k.configMap && r.ConfigMapKeyRef.Key == k.key {
						envWhy = appendNew(envWhy, "reads ConfigMap "+k.configMap+" key "+k.key+" (env "+e.Name+")")
					}
				}
			}
			for _, v := range o.template.Spec.Volumes {
				if mountsKey(v, k) {
					volWhy = appendNew(volWhy, "mounts ConfigMap "+k.configMap+" as volume "+v.Name+": the kubelet updates the file in place; restart it by hand if it reads the file only at start")
				}
			}
		}
		switch {
		case len(envWhy) > 0:
			others = append(others, o)
			restarts = append(restarts, Restart{Workload: o.Ref, Why: strings.Join(envWhy, "; ")})
		case len(volWhy) > 0:
			affected = append(affected, Affected{Workload: o.Ref, Why: strings.Join(volWhy, "; ")})
		}
	}
	return others, restarts, affected
}

func mountsKey(v corev1.Volume, k cmKey) bool {
	has := func(items []corev1.KeyToPath) bool {
		return len(items) == 0 || slices.ContainsFunc(items, func(i corev1.KeyToPath) bool { return i.Key == k.key })
	}
	if c := v.ConfigMap; c != nil && c.Name == k.configMap && has(c.Items) {
		return true
	}
	if p := v.Projected; p != nil {
		for _, s := range p.Sources {
			if c := s.ConfigMap; c != nil && c.Name == k.configMap && has(c.Items) {
				return true
			}
		}
	}
	return false
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// configMapNames are the ConfigMaps the template's containers take
// environment from.
func configMapNames(tmpl *corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range tmpl.Spec.Containers {
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				out = appendNew(out, ef.ConfigMapRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				out = appendNew(out, e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	}
	return out
}

// readConfigMaps gets the named ConfigMaps; a missing one is left out.
func readConfigMaps(ctx context.Context, cs kubernetes.Interface, namespace string, names []string) (map[string]*corev1.ConfigMap, error) {
	out := map[string]*corev1.ConfigMap{}
	for _, n := range names {
		cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, apiErr("ConfigMap "+namespace+"/"+n, err)
		}
		out[n] = cm
	}
	return out, nil
}

// copy is a deep copy, for trying a change without keeping it.
func (w *appsWorkload) copy() *appsWorkload {
	switch o := w.obj.(type) {
	case *appsv1.Deployment:
		return wrapDeployment(o.DeepCopy())
	case *appsv1.StatefulSet:
		return wrapStatefulSet(o.DeepCopy())
	case *batchv1.CronJob:
		c := wrapCronJob(o.DeepCopy())
		c.jobs = w.jobs
		return c
	}
	panic(fmt.Sprintf("ops: workload of type %T", w.obj))
}
