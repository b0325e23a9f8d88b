// Package inject holds the pure mutation logic of the gpu-directory-injector
// admission webhook: it reads the gpu-directories and gpu-shares annotations of
// a pod and answers with explicit RFC 6902 patch operations that mount host
// device nodes (e.g. /dev/nvidia0), set the runtime class and, in hybrid mode,
// request time-sliced GPU shares. It makes no Kubernetes API calls, so the
// webhook server, tests and fuzzing can drive it directly.
package inject

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/gpuslice/gpuslice/internal/suggest"
	"github.com/gpuslice/gpuslice/pkg/workload"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Identity of the config file format.
const (
	ConfigAPIVersion = "gpuslice.io/v1alpha1"
	ConfigKind       = "InjectorConfig"
)

// BuiltinProfileName is the profile that exists without any config file.
const BuiltinProfileName = "nvidia"

// Device is one host device node (or directory) mounted into containers
// through a hostPath volume named Name.
type Device struct {
	Name     string `json:"name" yaml:"name"`
	HostPath string `json:"hostPath" yaml:"hostPath"`
	// MountPath defaults to HostPath.
	MountPath string `json:"mountPath,omitempty" yaml:"mountPath,omitempty"`
	// Type stays nil for the built-in devices so the volume looks exactly like
	// the one the original webhook produced.
	Type *corev1.HostPathType `json:"type,omitempty" yaml:"type,omitempty"`
}

// Profile is a named set of devices selected by the gpu-directories annotation.
type Profile struct {
	Name             string   `json:"name" yaml:"name"`
	Devices          []Device `json:"devices" yaml:"devices"`
	RuntimeClassName string   `json:"runtimeClassName,omitempty" yaml:"runtimeClassName,omitempty"`
	// Namespaces, when not empty, is the only place the profile may be used.
	Namespaces []string `json:"namespaces,omitempty" yaml:"namespaces,omitempty"`
}

// Hybrid configures the gpu-shares annotation (seed "Method 3").
type Hybrid struct {
	// ResourceName is the extended resource requested; DefaultSharedResource when empty.
	ResourceName string `json:"resourceName,omitempty" yaml:"resourceName,omitempty"`
	// Env is added to the shares container where the variable is not set yet.
	// It may not hold NVIDIA_VISIBLE_DEVICES: the device plugin sets that
	// to the GPU it allocated, and a value here would override it.
	Env map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	// RuntimeClassName is set on a pod with shares that names no runtime
	// class and selects no profile that sets one: K3s's default runtime is
	// runc, under which a share is only a number. Nil in the file means
	// DefaultSharesRuntimeClass; "" means none (nvidia is the default
	// runtime).
	RuntimeClassName *string `json:"runtimeClassName,omitempty" yaml:"runtimeClassName,omitempty"`
}

// DefaultSharesRuntimeClass is the runtime class pods with shares get
// unless the configuration says otherwise: the one K3s registers for the
// NVIDIA container runtime, as the built-in profile uses.
const DefaultSharesRuntimeClass = "nvidia"

// EnvVisibleDevices is the variable through which the device plugin tells
// the NVIDIA container runtime which GPU a container was allocated.
const EnvVisibleDevices = "NVIDIA_VISIBLE_DEVICES"

// Config is the resolved injector configuration. Build it with DefaultConfig,
// ParseConfig or LoadConfig; Mutate only reads it, so one Config may serve
// concurrent requests.
type Config struct {
	Profiles           []Profile
	ExcludedNamespaces []string
	Hybrid             Hybrid
}

// fileConfig is the on-disk form. Nil slices/maps mean "omitted, use the
// default"; explicitly empty ones mean "none".
type fileConfig struct {
	APIVersion         string    `json:"apiVersion"`
	Kind               string    `json:"kind"`
	ExcludedNamespaces []string  `json:"excludedNamespaces"`
	Profiles           []Profile `json:"profiles"`
	// ProfileNamespaces limits profiles, the built-in one included, to
	// namespaces by name: the chart's webhook.profileNamespaces.
	ProfileNamespaces map[string][]string `json:"profileNamespaces"`
	Hybrid            *Hybrid             `json:"hybrid"`
}

// knownFields lists the fields accepted at each level of the file (path with
// indices removed), so an unknown field can be answered with a suggestion.
var knownFields = map[string][]string{
	"":                 {"apiVersion", "kind", "excludedNamespaces", "profiles", "profileNamespaces", "hybrid"},
	"profiles":         {"name", "devices", "runtimeClassName", "namespaces"},
	"profiles.devices": {"name", "hostPath", "mountPath", "type"},
	"hybrid":           {"resourceName", "env", "runtimeClassName"},
}

var hostPathTypes = []corev1.HostPathType{
	corev1.HostPathUnset,
	corev1.HostPathDirectoryOrCreate,
	corev1.HostPathDirectory,
	corev1.HostPathFileOrCreate,
	corev1.HostPathFile,
	corev1.HostPathSocket,
	corev1.HostPathCharDev,
	corev1.HostPathBlockDev,
}

// builtinProfile returns the devices of seed "Method 1"; a fresh value each
// time so callers may modify what they get.
func builtinProfile() Profile {
	dev := func(name string) Device {
		return Device{Name: name, HostPath: "/dev/" + name, MountPath: "/dev/" + name}
	}
	return Profile{
		Name:             BuiltinProfileName,
		Devices:          []Device{dev("nvidia0"), dev("nvidiactl"), dev("nvidia-uvm")},
		RuntimeClassName: "nvidia",
	}
}

// defaultHybridEnv holds no NVIDIA_VISIBLE_DEVICES: the device plugin's
// per-GPU assignment must reach the container (with "all", every pod on a
// two-GPU node would see both GPUs).
func defaultHybridEnv() map[string]string {
	return map[string]string{
		"NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
	}
}

func defaultSharesRuntimeClass() *string {
	rc := DefaultSharesRuntimeClass
	return &rc
}

// defaultExcluded keeps annotated pods out of kube-system and out of the
// webhook's own namespace, where a failing webhook could block its own repair.
func defaultExcluded(webhookNamespace string) []string {
	excluded := []string{"kube-system"}
	if webhookNamespace != "" && webhookNamespace != "kube-system" {
		excluded = append(excluded, webhookNamespace)
	}
	return excluded
}

// DefaultConfig is the configuration used without a config file: the
// built-in nvidia profile, kube-system and webhookNamespace excluded, and the
// seed's hybrid resource and environment.
func DefaultConfig(webhookNamespace string) *Config {
	return &Config{
		Profiles:           []Profile{builtinProfile()},
		ExcludedNamespaces: defaultExcluded(webhookNamespace),
		Hybrid: Hybrid{
			ResourceName:     workload.SharedResource,
			Env:              defaultHybridEnv(),
			RuntimeClassName: defaultSharesRuntimeClass(),
		},
	}
}

// ProfileNames returns the names of all profiles, sorted.
func (c *Config) ProfileNames() []string {
	names := make([]string, 0, len(c.Profiles))
	for _, p := range c.Profiles {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

// LoadConfig reads and parses the config file at path.
func LoadConfig(path, webhookNamespace string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read injector config: %w", err)
	}
	cfg, err := ParseConfig(data, webhookNamespace)
	if err != nil {
		return nil, fmt.Errorf("injector config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses a YAML InjectorConfig strictly: unknown or misspelt
// fields are errors, and every problem found is reported (joined with
// errors.Join), each naming its field path and the fix. The built-in nvidia
// profile is added unless the file defines its own "nvidia" profile.
func ParseConfig(data []byte, webhookNamespace string) (*Config, error) {
	// YAMLToJSONStrict rejects duplicate keys; the case-sensitive strict JSON
	// decoder then reports unknown fields with their full path.
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	var fc fileConfig
	strictErrs, err := sigsjson.UnmarshalStrict(jsonData, &fc)
	if err != nil {
		// YAML 1.1 reads unquoted y/n/yes/no/on/off as booleans and 1 as a number.
		return nil, fmt.Errorf("decode: %w (quote string values such as \"on\", \"y\" or \"1\")", err)
	}
	p := &problems{}
	for _, se := range strictErrs {
		p.strict(se)
	}
	fc.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return fc.resolve(webhookNamespace), nil
}

// resolve applies defaults; fc must be valid.
func (fc *fileConfig) resolve(webhookNamespace string) *Config {
	cfg := DefaultConfig(webhookNamespace)
	if fc.ExcludedNamespaces != nil {
		cfg.ExcludedNamespaces = fc.ExcludedNamespaces
	}
	if fc.Hybrid != nil {
		if fc.Hybrid.ResourceName != "" {
			cfg.Hybrid.ResourceName = fc.Hybrid.ResourceName
		}
		if fc.Hybrid.Env != nil {
			cfg.Hybrid.Env = fc.Hybrid.Env
		}
		if fc.Hybrid.RuntimeClassName != nil {
			cfg.Hybrid.RuntimeClassName = fc.Hybrid.RuntimeClassName
		}
	}
	cfg.Profiles = fc.profilesWithBuiltin()
	for i := range cfg.Profiles {
		if ns, ok := fc.ProfileNamespaces[cfg.Profiles[i].Name]; ok {
			cfg.Profiles[i].Namespaces = ns
		}
		for j := range cfg.Profiles[i].Devices {
			d := &cfg.Profiles[i].Devices[j]
			if d.MountPath == "" {
				d.MountPath = d.HostPath
			}
			// An explicit "" means unset; keep it nil so the volume carries no type.
			if d.Type != nil && *d.Type == corev1.HostPathUnset {
				d.Type = nil
			}
		}
	}
	return cfg
}

// profilesWithBuiltin puts the built-in profile first unless the file
// replaces it.
func (fc *fileConfig) profilesWithBuiltin() []Profile {
	for _, p := range fc.Profiles {
		if p.Name == BuiltinProfileName {
			return slices.Clone(fc.Profiles)
		}
	}
	return append([]Profile{builtinProfile()}, fc.Profiles...)
}

// problems collects validation errors so all of them reach the user at once.
type problems struct{ errs []error }

func (p *problems) addf(field, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// strict turns an unknown/duplicate field error into one with a suggestion.
func (p *problems) strict(err error) {
	var fe sigsjson.FieldError
	if !errors.As(err, &fe) {
		p.errs = append(p.errs, err)
		return
	}
	fieldPath := fe.FieldPath()
	if !strings.HasPrefix(err.Error(), "unknown field") {
		p.addf(fieldPath, "%v; set each field once", err)
		return
	}
	parent, name := splitFieldPath(fieldPath)
	known := knownFields[parent]
	if guess, _ := suggest.Closest(name, known); guess != "" {
		p.addf(fieldPath, "unknown field; did you mean %q?", guess)
		return
	}
	p.addf(fieldPath, "unknown field; remove it (known fields here: %s)", strings.Join(known, ", "))
}

// splitFieldPath turns "profiles[1].devices[0].hostpath" into
// ("profiles.devices", "hostpath").
func splitFieldPath(p string) (parent, name string) {
	var b strings.Builder
	depth := 0
	for _, r := range p {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	clean := b.String()
	if i := strings.LastIndexByte(clean, '.'); i >= 0 {
		return clean[:i], clean[i+1:]
	}
	return "", clean
}

func (fc *fileConfig) validate(p *problems) {
	if fc.APIVersion != ConfigAPIVersion {
		p.addf("apiVersion", "%s; set it to %q", describeValue(fc.APIVersion, "is not supported"), ConfigAPIVersion)
	}
	if fc.Kind != ConfigKind {
		p.addf("kind", "%s; set it to %q", describeValue(fc.Kind, "is not supported"), ConfigKind)
	}
	for i, ns := range fc.ExcludedNamespaces {
		checkName(p, fmt.Sprintf("excludedNamespaces[%d]", i), ns, "namespace", validation.IsDNS1123Label)
	}
	names := map[string]int{}
	for i := range fc.Profiles {
		prof := &fc.Profiles[i]
		field := fmt.Sprintf("profiles[%d]", i)
		validateProfile(p, field, prof)
		if first, dup := names[prof.Name]; dup && prof.Name != "" {
			p.addf(field+".name", "%q is already used by profiles[%d]; profile names must be unique", prof.Name, first)
		} else {
			names[prof.Name] = i
		}
	}
	checkAcrossProfiles(p, fc.Profiles)
	fc.validateProfileNamespaces(p)
	if fc.Hybrid != nil {
		validateHybrid(p, fc.Hybrid)
	}
}

// validateProfileNamespaces checks profileNamespaces names profiles that
// exist and says each profile's namespaces in one place only.
func (fc *fileConfig) validateProfileNamespaces(p *problems) {
	names := make([]string, 0, len(fc.ProfileNamespaces))
	for name := range fc.ProfileNamespaces {
		names = append(names, name)
	}
	sort.Strings(names)
	known := fc.profilesWithBuiltin()
	for _, name := range names {
		field := "profileNamespaces." + name
		i := slices.IndexFunc(known, func(prof Profile) bool { return prof.Name == name })
		switch {
		case i < 0:
			profileNames := make([]string, 0, len(known))
			for _, prof := range known {
				profileNames = append(profileNames, prof.Name)
			}
			p.addf(field, "no profile %q; known profiles: %s", name, strings.Join(profileNames, ", "))
			continue
		case len(known[i].Namespaces) > 0:
			p.addf(field, "profile %q also lists namespaces in profiles[].namespaces; keep one of the two", name)
		case len(fc.ProfileNamespaces[name]) == 0:
			p.addf(field, "empty; list the namespaces that may use profile %q, or remove the entry to allow every namespace not excluded", name)
		}
		for k, ns := range fc.ProfileNamespaces[name] {
			checkName(p, fmt.Sprintf("%s[%d]", field, k), ns, "namespace", validation.IsDNS1123Label)
		}
	}
}

func describeValue(v, problem string) string {
	if v == "" {
		return "missing"
	}
	return fmt.Sprintf("%q %s", v, problem)
}

// checkName reports value when check (a k8s validation func) rejects it,
// suggesting a lowercase, dash-separated spelling when that would pass.
func checkName(p *problems, field, value, what string, check func(string) []string) {
	if value == "" {
		p.addf(field, "missing; set a %s", what)
		return
	}
	msgs := check(value)
	if len(msgs) == 0 {
		return
	}
	// A ready spelling is more useful than the validator's regex text.
	fix := strings.Join(msgs, "; ")
	if s := suggestName(value); s != value && len(check(s)) == 0 {
		fix = fmt.Sprintf("write it as %q", s)
	}
	p.addf(field, "%q is not a valid %s; %s", value, what, fix)
}

func suggestName(s string) string {
	s = strings.ToLower(s)
	s = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, s)
	return strings.Trim(s, "-.")
}

func validateProfile(p *problems, field string, prof *Profile) {
	checkName(p, field+".name", prof.Name, "profile name", validation.IsDNS1123Label)
	if len(prof.Devices) == 0 {
		p.addf(field+".devices", "no devices; list at least one {name, hostPath}")
	}
	seen := map[string]map[string]int{"name": {}, "hostPath": {}, "mountPath": {}}
	for j, d := range prof.Devices {
		df := fmt.Sprintf("%s.devices[%d]", field, j)
		checkName(p, df+".name", d.Name, "volume name", validation.IsDNS1123Label)
		checkPath(p, df+".hostPath", d.HostPath)
		checkDevicePath(p, df+".hostPath", d.HostPath)
		mountPath := d.MountPath
		if mountPath == "" {
			mountPath = d.HostPath
		} else {
			checkPath(p, df+".mountPath", d.MountPath)
		}
		if d.Type != nil && !slices.Contains(hostPathTypes, *d.Type) {
			p.addf(df+".type", "%q is not a hostPath type; %s", *d.Type, typeFix(*d.Type))
		}
		for _, kv := range [][2]string{{"name", d.Name}, {"hostPath", d.HostPath}, {"mountPath", mountPath}} {
			key, value := kv[0], kv[1]
			if first, dup := seen[key][value]; dup && value != "" {
				p.addf(df+"."+key, "%q is also used by devices[%d]; each device in a profile needs its own %s", value, first, key)
			} else {
				seen[key][value] = j
			}
		}
	}
	if prof.RuntimeClassName != "" {
		checkName(p, field+".runtimeClassName", prof.RuntimeClassName, "runtime class name", validation.IsDNS1123Subdomain)
	}
	for k, ns := range prof.Namespaces {
		checkName(p, fmt.Sprintf("%s.namespaces[%d]", field, k), ns, "namespace", validation.IsDNS1123Label)
	}
}

func typeFix(t corev1.HostPathType) string {
	for _, valid := range hostPathTypes {
		if valid != "" && strings.EqualFold(string(valid), string(t)) {
			return fmt.Sprintf("write it as %q", valid)
		}
	}
	names := make([]string, 0, len(hostPathTypes))
	for _, valid := range hostPathTypes[1:] {
		names = append(names, string(valid))
	}
	return "use one of " + strings.Join(names, ", ") + " (or omit it)"
}

// checkPath requires an absolute, clean path other than "/": mounting the
// node's root, or over the container's root, is never a device injection.
func checkPath(p *problems, field, value string) {
	switch {
	case value == "":
		p.addf(field, "missing; set the device path on the node, e.g. \"/dev/nvidia0\"")
	case !path.IsAbs(value):
		p.addf(field, "%q is not absolute; write it as %q", value, path.Clean("/"+value))
	case path.Clean(value) != value:
		p.addf(field, "%q is not clean; write it as %q", value, path.Clean(value))
	case value == "/":
		p.addf(field, "\"/\" is not allowed; name a device node or directory such as \"/dev/dri\"")
	}
}

// deviceRoot is the only host directory a profile may mount from: any other
// host path (/etc, the container runtime's socket) would hand a pod the node.
const deviceRoot = "/dev/"

// checkDevicePath keeps host paths under /dev/; checkPath reports the
// malformed ones.
func checkDevicePath(p *problems, field, value string) {
	if !path.IsAbs(value) || path.Clean(value) != value || value == "/" {
		return
	}
	// Not /dev itself: that is every disk of the node too.
	if !strings.HasPrefix(value, deviceRoot) {
		p.addf(field, "%q is not a device; only paths under %s may be injected (e.g. \"/dev/dri\"); mount anything else with the pod's own volumes", value, deviceRoot)
	}
}

// checkAcrossProfiles makes a volume name, and a mount path, mean the same
// device in every profile, so combining profiles never yields two different
// volumes competing for one name or one mount point.
func checkAcrossProfiles(p *problems, fromFile []Profile) {
	type owner struct {
		profile string
		dev     Device
	}
	type entry struct {
		field string // "" for the built-in profile, which is valid by construction
		prof  Profile
	}
	var entries []entry
	if !slices.ContainsFunc(fromFile, func(prof Profile) bool { return prof.Name == BuiltinProfileName }) {
		entries = append(entries, entry{prof: builtinProfile()})
	}
	for i, prof := range fromFile {
		entries = append(entries, entry{fmt.Sprintf("profiles[%d]", i), prof})
	}
	byName := map[string]owner{}
	byMount := map[string]owner{}
	for _, e := range entries {
		for j, d := range e.prof.Devices {
			if d.MountPath == "" {
				d.MountPath = d.HostPath
			}
			field := fmt.Sprintf("%s.devices[%d]", e.field, j)
			if o, ok := byName[d.Name]; !ok {
				byName[d.Name] = owner{e.prof.Name, d}
			} else if o.profile != e.prof.Name && (o.dev.HostPath != d.HostPath || !sameType(o.dev.Type, d.Type)) {
				p.addf(field+".name", "volume name %q already means %s in profile %q; use the same hostPath and type or another name",
					d.Name, o.dev.HostPath, o.profile)
			}
			if o, ok := byMount[d.MountPath]; !ok {
				byMount[d.MountPath] = owner{e.prof.Name, d}
			} else if o.profile != e.prof.Name && o.dev.HostPath != d.HostPath {
				p.addf(field+".mountPath", "%q already receives %s in profile %q; mount %s elsewhere",
					d.MountPath, o.dev.HostPath, o.profile, d.HostPath)
			}
		}
	}
}

func sameType(a, b *corev1.HostPathType) bool {
	typeOf := func(t *corev1.HostPathType) corev1.HostPathType {
		if t == nil {
			return corev1.HostPathUnset
		}
		return *t
	}
	return typeOf(a) == typeOf(b)
}

func validateHybrid(p *problems, h *Hybrid) {
	if h.ResourceName != "" {
		if msgs := content.IsLabelKey(h.ResourceName); len(msgs) > 0 {
			p.addf("hybrid.resourceName", "%q is not a qualified resource name (%s); use e.g. %q",
				h.ResourceName, strings.Join(msgs, "; "), workload.SharedResource)
		} else if !strings.Contains(h.ResourceName, "/") {
			p.addf("hybrid.resourceName", "%q has no domain; extended resources look like %q", h.ResourceName, workload.SharedResource)
		}
	}
	if rc := h.RuntimeClassName; rc != nil && *rc != "" {
		checkName(p, "hybrid.runtimeClassName", *rc, "runtime class name", validation.IsDNS1123Subdomain)
	}
	keys := make([]string, 0, len(h.Env))
	for k := range h.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if msgs := content.IsCIdentifier(k); len(msgs) > 0 {
			p.addf("hybrid.env."+k, "%q is not a valid variable name; use letters, digits and '_' and do not start with a digit", k)
		}
		if k == EnvVisibleDevices {
			p.addf("hybrid.env."+k, "would override the GPU the device plugin allocates to each pod with shares "+
				"(with %q every pod on a multi-GPU node sees every GPU); remove it", h.Env[k])
		}
	}
}
