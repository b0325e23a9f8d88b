package inject

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Denial reasons: short, stable labels for metrics.
const (
	ReasonEmptyAnnotation     = "empty-annotation"
	ReasonUnknownProfile      = "unknown-profile"
	ReasonNamespaceNotAllowed = "namespace-not-allowed"
	ReasonVolumeConflict      = "volume-conflict"
	ReasonInvalidShares       = "invalid-shares"
	ReasonUnknownContainer    = "unknown-container"
	ReasonPodSecurity         = "pod-security"
)

// Decision is the outcome of Mutate for one pod.
type Decision struct {
	Allowed bool
	// Reason is "" when allowed, else one of the Reason* labels.
	Reason string
	// Message tells, for a denial, what is wrong and how to fix it.
	Message string
	// Patch adds what is missing; empty when the pod needs nothing.
	Patch []PatchOp
	// Warnings become AdmissionResponse.warnings.
	Warnings []string
	// Profiles are the configured profiles the annotation selected, in
	// annotation order; set whenever the annotation resolved, also on later
	// denials, so metrics can use them as bounded labels.
	Profiles []string
}

// denial is a refusal found while planning the patch.
type denial struct{ reason, message string }

func deny(reason, format string, args ...any) *denial {
	return &denial{reason: reason, message: fmt.Sprintf(format, args...)}
}

// mutation accumulates the patch and warnings for one pod.
type mutation struct {
	cfg      *Config
	pod      *corev1.Pod
	ops      []PatchOp
	warnings []string
}

func (m *mutation) warn(format string, args ...any) {
	m.warnings = append(m.warnings, warning(format, args...))
}

// Namespace is what Mutate knows of the pod's namespace.
type Namespace struct {
	// Name is the AdmissionRequest's namespace: pod.metadata.namespace may
	// still be empty on create.
	Name string
	// HostPathForbidden is set when the namespace's Pod Security level
	// (label pod-security.kubernetes.io/enforce: baseline or restricted)
	// refuses hostPath volumes, so device profiles cannot work there.
	HostPathForbidden bool
}

// Mutate decides on one pod in a namespace that allows hostPath; see MutateIn.
func (c *Config) Mutate(namespace string, pod *corev1.Pod) Decision {
	return c.MutateIn(Namespace{Name: namespace}, pod)
}

// MutateIn decides on one pod. namespace is the AdmissionRequest's namespace:
// pod.metadata.namespace may still be empty on create. pod must be decoded
// (see DecodePod) from the JSON the patch will be applied to, because whether
// a list or map is present there decides between appending and adding it.
// Mutate does not modify pod, and applying its patch then calling it again
// yields no patch.
func (c *Config) MutateIn(namespace Namespace, pod *corev1.Pod) Decision {
	if c == nil {
		c = DefaultConfig("")
	}
	if pod == nil {
		return Decision{Allowed: true}
	}
	profilesValue, wantProfiles := pod.Annotations[workload.AnnotationProfiles]
	sharesValue, wantShares := pod.Annotations[workload.AnnotationShares]
	if !wantProfiles && !wantShares {
		if _, ok := pod.Annotations[workload.AnnotationSharesContainer]; ok {
			return Decision{Allowed: true, Warnings: []string{
				warning("%s ignored: set %s to request GPU shares", workload.AnnotationSharesContainer, workload.AnnotationShares),
			}}
		}
		return Decision{Allowed: true}
	}

	var d Decision
	var profiles []*Profile
	if wantProfiles {
		var den *denial
		if profiles, den = c.resolveProfiles(profilesValue); den != nil {
			return denied(d, den)
		}
		for _, p := range profiles {
			d.Profiles = append(d.Profiles, p.Name)
		}
	}
	m := &mutation{cfg: c, pod: pod}
	if den := m.plan(namespace, profiles, wantShares, sharesValue); den != nil {
		return denied(d, den)
	}
	d.Allowed, d.Patch, d.Warnings = true, m.ops, m.warnings
	return d
}

func denied(d Decision, den *denial) Decision {
	d.Reason, d.Message = den.reason, den.message
	return d
}

// plan runs the checks that can deny, then builds the ops. Device injection
// can still deny on a volume conflict; the caller then drops what was built.
func (m *mutation) plan(namespace Namespace, profiles []*Profile, wantShares bool, sharesValue string) *denial {
	var shares int64
	if wantShares {
		var den *denial
		if shares, den = parseShares(sharesValue); den != nil {
			return den
		}
	}
	if den := m.cfg.checkNamespace(namespace.Name, profiles, wantShares); den != nil {
		return den
	}
	if den := checkPodSecurity(namespace, profiles); den != nil {
		return den
	}
	target := -1
	if wantShares {
		var den *denial
		if target, den = m.shareTarget(); den != nil {
			return den
		}
	}
	if den := m.injectDevices(profiles); den != nil {
		return den
	}
	m.setRuntimeClass(profiles, wantShares)
	if target >= 0 {
		m.addShares(target, shares)
		m.addEnv(target)
	}
	return nil
}

// resolveProfiles reads "NVIDIA , intel-qsv": comma separated, case and
// space insensitive, duplicates folded, order kept.
func (c *Config) resolveProfiles(value string) ([]*Profile, *denial) {
	byName := map[string]*Profile{}
	for i := range c.Profiles {
		key := strings.ToLower(c.Profiles[i].Name)
		if _, dup := byName[key]; !dup {
			byName[key] = &c.Profiles[i]
		}
	}
	var profiles []*Profile
	var unknown []string
	seen := map[string]bool{}
	for _, part := range strings.Split(value, ",") {
		name := strings.TrimSpace(part)
		key := strings.ToLower(name)
		if key == "" || seen[key] {
			continue
		}
		seen[key] = true
		if p, ok := byName[key]; ok {
			profiles = append(profiles, p)
		} else {
			unknown = append(unknown, fmt.Sprintf("%q", name))
		}
	}
	known := strings.Join(c.ProfileNames(), ", ")
	if len(unknown) > 0 {
		return nil, deny(ReasonUnknownProfile,
			"annotation %s names unknown profile(s) %s; known profiles: %s. Use a comma-separated list of known profiles",
			workload.AnnotationProfiles, strings.Join(unknown, ", "), known)
	}
	if len(profiles) == 0 {
		return nil, deny(ReasonEmptyAnnotation,
			"annotation %s=%q names no profile; set it to a comma-separated list of profiles (known: %s) or remove it",
			workload.AnnotationProfiles, value, known)
	}
	return profiles, nil
}

func (c *Config) checkNamespace(namespace string, profiles []*Profile, wantShares bool) *denial {
	if slices.Contains(c.ExcludedNamespaces, namespace) {
		var used []string
		if len(profiles) > 0 {
			used = append(used, workload.AnnotationProfiles)
		}
		if wantShares {
			used = append(used, workload.AnnotationShares)
		}
		return deny(ReasonNamespaceNotAllowed,
			"namespace %q is excluded from GPU injection by the injector config (excludedNamespaces); remove the %s annotation(s) or run the pod in another namespace",
			namespace, strings.Join(used, "/"))
	}
	var blocked []string
	for _, p := range profiles {
		if len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, namespace) {
			blocked = append(blocked, fmt.Sprintf("%s (allowed in: %s)", p.Name, strings.Join(p.Namespaces, ", ")))
		}
	}
	if len(blocked) > 0 {
		return deny(ReasonNamespaceNotAllowed,
			"profile(s) %s may not be used in namespace %q; remove them from %s or ask an administrator to add the namespace to the profile",
			strings.Join(blocked, "; "), namespace, workload.AnnotationProfiles)
	}
	return nil
}

// checkPodSecurity refuses device profiles where Pod Security would refuse
// their hostPath volumes anyway, with a message that says what to change
// instead of Pod Security's, which names volumes the user never wrote.
func checkPodSecurity(namespace Namespace, profiles []*Profile) *denial {
	if !namespace.HostPathForbidden || len(profiles) == 0 {
		return nil
	}
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.Name
	}
	return deny(ReasonPodSecurity,
		"namespace %q enforces Pod Security %s (label %s), which refuses the hostPath volumes that profile(s) %s mount; "+
			"label the namespace %s=privileged (kubectl label namespace %s %s=privileged --overwrite), "+
			"or drop %s and request GPU shares only (%s), which need no hostPath",
		namespace.Name, strings.Join(workload.PodSecurityLevelsForbiddingHostPath, " or "), workload.LabelPodSecurityEnforce,
		strings.Join(names, ", "), workload.LabelPodSecurityEnforce, namespace.Name, workload.LabelPodSecurityEnforce,
		workload.AnnotationProfiles, workload.AnnotationShares)
}

// containerRef is a container and the JSON pointer it lives at.
type containerRef struct {
	path string
	c    *corev1.Container
}

// mountTargets lists the containers that get devices: regular and init
// containers. Ephemeral (debug) containers are left alone: they cannot
// declare volume mounts on create and are added through another subresource.
func mountTargets(pod *corev1.Pod) []containerRef {
	var refs []containerRef
	for i := range pod.Spec.Containers {
		refs = append(refs, containerRef{fmt.Sprintf("/spec/containers/%d", i), &pod.Spec.Containers[i]})
	}
	for i := range pod.Spec.InitContainers {
		refs = append(refs, containerRef{fmt.Sprintf("/spec/initContainers/%d", i), &pod.Spec.InitContainers[i]})
	}
	return refs
}

// profileDevice is a device with the profile it came from.
type profileDevice struct {
	profile string
	Device
}

func devicesOf(profiles []*Profile) []profileDevice {
	var out []profileDevice
	for _, p := range profiles {
		for _, d := range p.Devices {
			if d.HostPath == "" {
				continue // only reachable with a hand-built Config; nothing to mount
			}
			d.HostPath = path.Clean(d.HostPath)
			if d.MountPath == "" {
				d.MountPath = d.HostPath
			}
			d.MountPath = path.Clean(d.MountPath)
			out = append(out, profileDevice{p.Name, d})
		}
	}
	return out
}

// volumeOwner says who holds a volume name, for conflict messages. It
// keeps the volume, not its description: describing costs an encode and a
// decode, and every real pod has volumes (the service-account token) that
// never conflict.
type volumeOwner struct {
	fromPod bool
	volume  corev1.Volume
	profile string // the profile whose device planned it, when not from the pod
}

func (o volumeOwner) describe() string {
	if o.fromPod {
		return describeVolume(o.volume)
	}
	return fmt.Sprintf("%s, device of profile %s", describeVolume(o.volume), o.profile)
}

// injectDevices mounts every device into every target container that has
// nothing at its mount path yet. A hostPath volume the pod already has for
// the device is reused under its own name; a new volume is added only when
// some container needs it. Devices shared by several profiles are handled
// once because the second sees the first one's volume and mounts.
func (m *mutation) injectDevices(profiles []*Profile) *denial {
	spec := &m.pod.Spec
	byPath := map[string]string{}
	byName := map[string]volumeOwner{}
	for _, v := range spec.Volumes {
		if !hasKey(byName, v.Name) {
			byName[v.Name] = volumeOwner{fromPod: true, volume: v}
		}
		if v.HostPath != nil {
			if p := path.Clean(v.HostPath.Path); !hasKey(byPath, p) {
				byPath[p] = v.Name
			}
		}
	}
	targets := mountTargets(m.pod)
	mounted := make([]map[string]string, len(targets)) // mountPath -> volume, existing and planned
	for i, t := range targets {
		mounted[i] = map[string]string{}
		for _, vm := range t.c.VolumeMounts {
			if p := path.Clean(vm.MountPath); !hasKey(mounted[i], p) {
				mounted[i][p] = vm.Name
			}
		}
	}
	newMounts := make([][]corev1.VolumeMount, len(targets))
	var newVolumes []corev1.Volume
	var devices []string
	var receivers []string
	for _, dev := range devicesOf(profiles) {
		name, reuse := byPath[dev.HostPath]
		if !reuse {
			name = dev.Name
		}
		var kept []string
		needed := false
		for i, t := range targets {
			if existing, ok := mounted[i][dev.MountPath]; ok {
				if existing != name {
					kept = append(kept, display(t.c.Name))
				}
				continue
			}
			mounted[i][dev.MountPath] = name
			newMounts[i] = append(newMounts[i], corev1.VolumeMount{Name: name, MountPath: dev.MountPath})
			if len(newMounts[i]) == 1 {
				receivers = append(receivers, display(t.c.Name))
			}
			needed = true
		}
		if len(kept) > 0 {
			m.warn("kept existing mount at %s (other volume) in %s", dev.MountPath, shortList(kept, 3))
		}
		if !needed {
			continue
		}
		devices = append(devices, dev.HostPath)
		if reuse {
			if name != dev.Name {
				m.warn("reused pod volume %s for %s", display(name), dev.HostPath)
			}
			continue
		}
		if owner, taken := byName[name]; taken {
			return volumeConflict(name, owner, dev)
		}
		vol := corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: dev.HostPath, Type: dev.Type},
		}}
		newVolumes = append(newVolumes, vol)
		byName[name] = volumeOwner{volume: vol, profile: dev.profile}
		byPath[dev.HostPath] = name
	}
	m.ops = addToList(m.ops, "/spec/volumes", len(spec.Volumes) > 0, newVolumes)
	for i, t := range targets {
		m.ops = addToList(m.ops, t.path+"/volumeMounts", len(t.c.VolumeMounts) > 0, newMounts[i])
	}
	if len(devices) > 0 {
		m.warn("mounted %s into %s", shortList(devices, 4), shortList(receivers, 3))
	}
	return nil
}

// hasKey lets the first of duplicate entries win, so the outcome stays
// deterministic even for pods that validation will reject later.
func hasKey[V any](m map[string]V, key string) bool {
	_, ok := m[key]
	return ok
}

func volumeConflict(name string, owner volumeOwner, dev profileDevice) *denial {
	if owner.fromPod {
		return deny(ReasonVolumeConflict,
			"the pod's volume %q is %s, but profile %s needs that name for hostPath %s; rename the pod's volume, "+
				"or give the pod a hostPath volume for %s (any name) so it is reused",
			name, owner.describe(), dev.profile, dev.HostPath, dev.HostPath)
	}
	return deny(ReasonVolumeConflict,
		"volume name %q is used by two devices: %s, and %s of profile %s; give one of them another name in the injector config",
		name, owner.describe(), dev.HostPath, dev.profile)
}

// describeVolume names a volume's source, e.g. "hostPath /dev/nvidia0" or "emptyDir".
func describeVolume(v corev1.Volume) string {
	if v.HostPath != nil {
		return "hostPath " + v.HostPath.Path
	}
	// VolumeSource has one pointer per source type; its JSON keys name them.
	data, err := json.Marshal(v.VolumeSource)
	var sources map[string]json.RawMessage
	if err != nil || json.Unmarshal(data, &sources) != nil || len(sources) == 0 {
		return "a volume without a source"
	}
	keys := make([]string, 0, len(sources))
	for k := range sources {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, "+")
}

// setRuntimeClass uses the first selected profile that names a runtime
// class, else, for a pod with shares, the hybrid one; it never overrides one
// the pod already has.
func (m *mutation) setRuntimeClass(profiles []*Profile, wantShares bool) {
	want, source := "", ""
	for _, p := range profiles {
		if p.RuntimeClassName != "" {
			want, source = p.RuntimeClassName, "profile "+p.Name
			break
		}
	}
	if rc := m.cfg.Hybrid.RuntimeClassName; want == "" && wantShares && rc != nil {
		want, source = *rc, workload.AnnotationShares
	}
	if want == "" {
		return
	}
	if rc := m.pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		if *rc != want {
			m.warn("kept runtimeClassName %s; %s would set %s", display(*rc), source, want)
		}
		return
	}
	m.ops = append(m.ops, PatchOp{Op: "add", Path: "/spec/runtimeClassName", Value: want})
	m.warn("set runtimeClassName %s (%s)", want, source)
}

// parseShares accepts a positive whole number of time-sliced GPU shares.
func parseShares(value string) (int64, *denial) {
	s := strings.TrimSpace(value)
	var n int64
	valid := s != "" && len(s) <= 9 // keeps n far from overflow
	for _, r := range s {
		if r < '0' || r > '9' {
			valid = false
			break
		}
		n = n*10 + int64(r-'0')
	}
	if !valid || n < 1 {
		return 0, deny(ReasonInvalidShares,
			"annotation %s=%q is not a positive whole number of GPU shares; write e.g. %s: \"2\" or remove it",
			workload.AnnotationShares, value, workload.AnnotationShares)
	}
	return n, nil
}

// shareTarget picks the container named by gpu-shares-container, else the
// first container. Init containers are not candidates: the shares are meant
// for the long-running workload.
func (m *mutation) shareTarget() (int, *denial) {
	containers := m.pod.Spec.Containers
	name := strings.TrimSpace(m.pod.Annotations[workload.AnnotationSharesContainer])
	if name == "" {
		if len(containers) == 0 {
			return -1, deny(ReasonUnknownContainer, "annotation %s needs a container to request GPU shares, but the pod has none", workload.AnnotationShares)
		}
		return 0, nil
	}
	names := make([]string, 0, len(containers))
	for i, c := range containers {
		if c.Name == name {
			return i, nil
		}
		names = append(names, c.Name)
	}
	return -1, deny(ReasonUnknownContainer,
		"annotation %s=%q names no container of this pod; the containers are: %s. Set it to one of them or remove it to use the first",
		workload.AnnotationSharesContainer, name, strings.Join(displayAll(names), ", "))
}

// addShares requests the shares and limits them to the same amount, as
// extended resources require. Values already in the pod win; a conflict is
// only reported, and then nothing is added, so request and limit stay equal.
func (m *mutation) addShares(index int, shares int64) {
	c := &m.pod.Spec.Containers[index]
	base := fmt.Sprintf("/spec/containers/%d/resources", index)
	resourceName := m.cfg.Hybrid.ResourceName
	if resourceName == "" {
		resourceName = workload.SharedResource
	}
	want := resource.NewQuantity(shares, resource.DecimalSI)
	r := &c.Resources
	sides := []struct {
		field string
		list  corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}}
	var missing []string
	conflict := false
	for _, s := range sides {
		have, ok := s.list[corev1.ResourceName(resourceName)]
		switch {
		case !ok:
			missing = append(missing, s.field)
		case have.Cmp(*want) != 0:
			conflict = true
			m.warn("kept %s %s=%s on %s; %s asks for %s",
				s.field, resourceName, have.String(), display(c.Name), workload.AnnotationShares, want)
		}
	}
	if conflict || len(missing) == 0 {
		return
	}
	value := map[string]string{resourceName: want.String()}
	// A nil map means the key is absent (or null) in the raw JSON; any
	// non-nil field proves the resources object exists.
	if r.Limits == nil && r.Requests == nil && r.Claims == nil {
		whole := map[string]map[string]string{}
		for _, f := range missing {
			whole[f] = value
		}
		m.ops = append(m.ops, PatchOp{Op: "add", Path: base, Value: whole})
	} else {
		for _, s := range sides {
			switch {
			case !slices.Contains(missing, s.field):
			case s.list != nil:
				m.ops = append(m.ops, PatchOp{Op: "add", Path: base + "/" + s.field + "/" + escapeKey(resourceName), Value: want.String()})
			default:
				m.ops = append(m.ops, PatchOp{Op: "add", Path: base + "/" + s.field, Value: value})
			}
		}
	}
	m.warn("added %s %s (%s) to %s", want, resourceName, strings.Join(missing, "+"), display(c.Name))
}

// addEnv sets the hybrid environment where the container does not set it;
// the container's own value, or valueFrom, always wins.
func (m *mutation) addEnv(index int) {
	c := &m.pod.Spec.Containers[index]
	names := make([]string, 0, len(m.cfg.Hybrid.Env))
	for k := range m.cfg.Hybrid.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	var add []corev1.EnvVar
	var added []string
	for _, name := range names {
		want := m.cfg.Hybrid.Env[name]
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 {
			add = append(add, corev1.EnvVar{Name: name, Value: want})
			added = append(added, name)
			continue
		}
		switch have := c.Env[i]; {
		case have.ValueFrom != nil:
			m.warn("kept %s (valueFrom) in %s; %s would set %q", name, display(c.Name), workload.AnnotationShares, want)
		case have.Value != want:
			m.warn("kept %s=%q in %s; %s would set %q", name, have.Value, display(c.Name), workload.AnnotationShares, want)
		}
	}
	m.ops = addToList(m.ops, fmt.Sprintf("/spec/containers/%d/env", index), len(c.Env) > 0, add)
	if len(added) > 0 {
		m.warn("set env %s in %s", shortList(added, 3), display(c.Name))
	}
	// The pod's own value wins over the device plugin's, which names the
	// GPU the shares were allocated on.
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == EnvVisibleDevices }); i >= 0 && c.Env[i].ValueFrom == nil {
		m.warn("%s=%q in %s overrides the device plugin's GPU; remove it",
			EnvVisibleDevices, c.Env[i].Value, display(c.Name))
	}
}
