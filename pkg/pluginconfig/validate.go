package pluginconfig

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Values the plugin accepts for its enumerated flags.
var (
	migStrategies        = []string{"none", "single", "mixed"}
	deviceListStrategies = []string{"envvar", "volume-mounts", "cdi-annotations", "cdi-cri"}
	deviceIDStrategies   = []string{"uuid", "index"}
)

// maxResourceNameLength is the plugin's limit for a fully qualified name.
const maxResourceNameLength = 63

// Validate checks a config against the plugin's rules and returns every
// problem found, or nil. Lines are unknown here (0); Parse fills them in.
func Validate(c *Config) ValidationErrors {
	if c == nil {
		return ValidationErrors{{Message: "no config", Fix: "pass a config to validate"}}
	}
	return validate(c, nil)
}

// validator collects problems. idx, when the config was parsed, tells a
// missing field from one set to its zero value.
type validator struct {
	idx  *nodeIndex
	errs ValidationErrors
}

// problem is a message and its fix, for checks shared by several fields.
type problem struct{ msg, fix string }

func (v *validator) add(path, msg, fix string) {
	v.errs = append(v.errs, FieldError{Path: path, Message: msg, Fix: fix})
}

func (v *validator) addProblem(path string, p problem) { v.add(path, p.msg, p.fix) }

// absent words a missing value as precisely as the parse allows.
func (v *validator) absent(path string) string {
	switch {
	case v.idx == nil:
		return "is missing or empty"
	case v.idx.has(path):
		return "is empty"
	default:
		return "is missing"
	}
}

func validate(c *Config, idx *nodeIndex) ValidationErrors {
	v := &validator{idx: idx}
	v.version(c.Version)
	v.flags(&c.Flags)
	v.resources(c.Resources)
	v.sharing(c.Sharing, c.Flags.MigStrategy)
	v.imex(c.Imex)
	return v.errs
}

func (v *validator) version(version string) {
	// The plugin reads an empty version as v1.
	if version == "" || version == Version {
		return
	}
	v.add("version", fmt.Sprintf("unknown version %s: the plugin reads only %s and refuses to start", quote(version), quote(Version)),
		"set version: "+Version)
}

// pathFlag is a flag holding a filesystem path.
type pathFlag struct {
	path  string
	value *string
}

func (v *validator) flags(f *Flags) {
	v.oneOf("flags.migStrategy", f.MigStrategy, migStrategies)
	paths := []pathFlag{
		{"flags.mpsRoot", f.MpsRoot},
		{"flags.nvidiaDriverRoot", f.NvidiaDriverRoot},
		{"flags.nvidiaDevRoot", f.NvidiaDevRoot},
	}
	if p := f.Plugin; p != nil {
		v.deviceListStrategy(p.DeviceListStrategy)
		v.oneOf("flags.plugin.deviceIDStrategy", p.DeviceIDStrategy, deviceIDStrategies)
		paths = append(paths,
			pathFlag{"flags.plugin.nvidiaCTKPath", p.NvidiaCTKPath},
			pathFlag{"flags.plugin.containerDriverRoot", p.ContainerDriverRoot},
			pathFlag{"flags.plugin.kubeletSocket", p.KubeletSocket})
	}
	if g := f.GFD; g != nil {
		if g.SleepInterval != nil && *g.SleepInterval <= 0 {
			v.add("flags.gfd.sleepInterval", "must be positive: gpu-feature-discovery would relabel the node in a tight loop",
				`use a duration such as "60s"`)
		}
		paths = append(paths,
			pathFlag{"flags.gfd.outputFile", g.OutputFile},
			pathFlag{"flags.gfd.machineTypeFile", g.MachineTypeFile})
	}
	for _, p := range paths {
		if p.value != nil && *p.value != "" && !strings.HasPrefix(*p.value, "/") {
			v.add(p.path, fmt.Sprintf("%s is not an absolute path, so it depends on the plugin's working directory", quote(*p.value)),
				"write the full path, starting with /")
		}
	}
}

// oneOf checks an enumerated flag; the plugin refuses to start on any other value.
func (v *validator) oneOf(path string, value *string, allowed []string) {
	if value == nil || slices.Contains(allowed, *value) {
		return
	}
	fix := didYouMean(*value, allowed)
	if fix == "" {
		fix = "use one of " + quoteAll(allowed)
	}
	v.add(path, fmt.Sprintf("unknown value %s: the plugin accepts %s and refuses to start otherwise", quote(*value), quoteAll(allowed)), fix)
}

func (v *validator) deviceListStrategy(list *StringList) {
	const path = "flags.plugin.deviceListStrategy"
	if list == nil {
		return
	}
	if len(*list) == 0 {
		v.add(path, "lists no strategy: the plugin needs at least one", "write deviceListStrategy: envvar")
	}
	for i, s := range *list {
		v.oneOf(indexPath(path, i), &s, deviceListStrategies)
	}
}

// resources checks the top-level resources section. The plugin parses it
// (malformed entries stop it) and then discards it with a warning.
func (v *validator) resources(r *Resources) {
	if r == nil {
		return
	}
	v.add("resources", "the plugin ignores the top-level resources section (custom resource names are not supported upstream yet) and only logs a warning",
		"remove it; to advertise shared GPUs as nvidia.com/gpu.shared set renameByDefault: true under sharing.timeSlicing")
	for _, group := range []struct {
		path string
		list []Resource
	}{{"resources.gpus", r.GPUs}, {"resources.mig", r.MIGs}} {
		for i, res := range group.list {
			p := indexPath(group.path, i)
			if res.Pattern == "" {
				v.add(p+".pattern", v.absent(p+".pattern")+": the plugin refuses to start without it",
					`add pattern: "*" or a product pattern such as "*A100*"`)
			}
			if res.Name == "" {
				v.add(p+".name", v.absent(p+".name")+": the plugin refuses to start without it", "add name: gpu")
			} else if prob := nameProblem(res.Name); prob.msg != "" {
				v.addProblem(p+".name", prob)
			}
		}
	}
}

func (v *validator) sharing(s Sharing, mig *string) {
	if s.TimeSlicing != nil && s.MPS != nil {
		v.add("sharing", "timeSlicing and mps are both set: they are mutually exclusive and the plugin would silently use mps",
			"keep only one of sharing.timeSlicing and sharing.mps")
	}
	for _, st := range []struct {
		path, strategy string
		rr             *ReplicatedResources
	}{
		{"sharing.timeSlicing", StrategyTimeSlicing, s.TimeSlicing},
		{"sharing.mps", StrategyMPS, s.MPS},
	} {
		switch {
		case st.rr != nil:
			v.replicated(st.path, st.rr, st.strategy, mig)
		case v.idx != nil && v.idx.has(st.path):
			// Written with nothing under it: almost certainly unfinished.
			v.add(st.path, "is empty: it lists no resource to share",
				"add resources: with an entry such as - name: nvidia.com/gpu and replicas: 4, or remove the line")
		}
	}
}

func (v *validator) replicated(path string, rr *ReplicatedResources, strategy string, mig *string) {
	if len(rr.Resources) == 0 {
		v.add(path+".resources", "lists no resource to share: the plugin refuses to start (no resources specified)",
			"add an entry: - name: nvidia.com/gpu with replicas: 4 under it")
		return
	}
	renameByDefault := isTrue(rr.RenameByDefault)
	// claims maps each advertised or original name to the entry owning it,
	// so that an explicit rename can be checked for collisions.
	claims := map[string]string{}
	claim := func(name, owner string) {
		if _, taken := claims[name]; !taken {
			claims[name] = owner
		}
	}
	for i, r := range rr.Resources {
		if r.Name == "" {
			continue
		}
		full, owner := qualify(r.Name), indexPath(path+".resources", i)
		claim(full, owner)
		if renameByDefault {
			claim(full+SharedSuffix, owner)
		}
	}
	first := map[string]int{}
	for i, r := range rr.Resources {
		p := indexPath(path+".resources", i)
		v.resourceName(p, r.Name, i, first, strategy, mig)
		v.replicas(p+".replicas", r.Replicas)
		v.rename(p, r, renameByDefault, claims)
		v.devices(p+".devices", r.Devices)
	}
}

func (v *validator) resourceName(p, name string, i int, first map[string]int, strategy string, mig *string) {
	path := p + ".name"
	if name == "" {
		v.add(path, v.absent(path)+": the plugin refuses to start without the resource to share", "add name: "+DefaultResourceName)
		return
	}
	if prob := nameProblem(name); prob.msg != "" {
		v.addProblem(path, prob)
		return
	}
	full := qualify(name)
	if j, dup := first[full]; dup {
		v.add(path, fmt.Sprintf("%s is listed twice (first at resources[%d])", quote(full), j),
			"keep one entry per resource")
		return
	}
	first[full] = i
	if prob := sharableProblem(full, strategy, mig); prob.msg != "" {
		v.addProblem(path, prob)
	}
}

// migResourceRe matches the resources of the mixed MIG strategy, e.g.
// mig-1g.10gb or mig-1c.2g.20gb, optionally with a dotted suffix.
var migResourceRe = regexp.MustCompile(`^mig-([0-9]+c\.)?[0-9]+g\.[0-9]+gb(\.[a-z0-9]+)*$`)

// sharableProblem says why the plugin cannot share full (a valid, qualified
// name) under strategy, or returns the zero problem.
func sharableProblem(full, strategy string, mig *string) problem {
	short := strings.TrimPrefix(full, ResourcePrefix+"/")
	switch {
	case short == "gpu":
		return problem{}
	case migResourceRe.MatchString(short):
		if strategy == StrategyMPS {
			return problem{quote(full) + " is a MIG device: MPS can share only full GPUs (" + DefaultResourceName + ")",
				"share " + DefaultResourceName + ", or use sharing.timeSlicing for MIG devices"}
		}
		if mig != nil && *mig != "mixed" {
			return problem{fmt.Sprintf("%s exists only with migStrategy mixed, but flags.migStrategy is %s", quote(full), quote(*mig)),
				"set flags.migStrategy: mixed, or share " + DefaultResourceName}
		}
		return problem{}
	case strings.HasSuffix(short, SharedSuffix):
		return problem{quote(full) + " is the name renameByDefault produces, not a resource the plugin can share",
			"write name: " + strings.TrimSuffix(full, SharedSuffix) + " and set renameByDefault: true"}
	}
	fix := didYouMean(full, []string{DefaultResourceName})
	if fix == "" {
		fix = "share " + DefaultResourceName + ", or with flags.migStrategy: mixed a MIG resource such as nvidia.com/mig-1g.10gb"
	}
	return problem{quote(full) + " is not a resource the plugin advertises: it can share " + DefaultResourceName +
		" and, with migStrategy mixed, nvidia.com/mig-<profile>", fix}
}

// qualify mirrors the plugin: a name without the nvidia.com/ prefix gets it.
func qualify(name string) string {
	if strings.HasPrefix(name, ResourcePrefix+"/") {
		return name
	}
	return ResourcePrefix + "/" + name
}

// nameProblem applies the plugin's resource-name rules (NewResourceName); a
// name failing them stops the plugin at start-up.
func nameProblem(name string) problem {
	full := qualify(name)
	short := strings.TrimPrefix(full, ResourcePrefix+"/")
	if strings.Contains(short, "/") {
		return problem{fmt.Sprintf("%s is not an %s resource: the plugin prefixes %s/ and refuses the result", quote(name), ResourcePrefix, ResourcePrefix),
			"use an " + ResourcePrefix + " name such as " + DefaultResourceName}
	}
	if len(full) > maxResourceNameLength {
		return problem{fmt.Sprintf("%s is %d characters long: the plugin allows at most %d, prefix included, and refuses to start", quote(full), len(full), maxResourceNameLength),
			"use a shorter name"}
	}
	if errs := validation.IsDNS1123Subdomain(short); len(errs) > 0 {
		return problem{fmt.Sprintf("%s is not a valid resource name (%s): the plugin refuses to start", quote(full), errs[0]),
			"use lowercase letters, digits, '-' and '.', such as " + DefaultResourceName}
	}
	return problem{}
}

func (v *validator) replicas(path string, n int) {
	switch {
	case n >= MinReplicas:
	case n == 0 && (v.idx == nil || !v.idx.has(path)):
		v.add(path, v.absent(path)+": the plugin refuses to start without the number of shares",
			"add replicas: N, the number of pods that may share each GPU, at least 2")
	default:
		v.add(path, fmt.Sprintf("must be at least %d, got %d: the plugin refuses to start", MinReplicas, n),
			"set replicas to 2 or more; to stop sharing, remove the entry or the whole sharing section")
	}
}

// rename checks an explicit rename. The plugin parses it (an invalid name
// stops it) and then overrides it: with renameByDefault the resource is
// advertised as <name>.shared, without it under its own name.
func (v *validator) rename(p string, r ReplicatedResource, renameByDefault bool, claims map[string]string) {
	if r.Rename == "" || r.Name == "" {
		return
	}
	path := p + ".rename"
	if prob := nameProblem(r.Rename); prob.msg != "" {
		v.addProblem(path, prob)
		return
	}
	full, target := qualify(r.Name), qualify(r.Rename)
	if owner, taken := claims[target]; taken && owner != p {
		v.add(path, fmt.Sprintf("%s collides with the name of %s", quote(target), owner), "give each shared resource its own name")
	} else {
		claims[target] = p
	}
	shared := full + SharedSuffix
	switch {
	case renameByDefault && target != shared:
		v.add(path, fmt.Sprintf("renameByDefault is true, so the plugin advertises %s and overrides rename %s", quote(shared), quote(target)),
			"remove rename")
	case !renameByDefault && target != full:
		v.add(path, fmt.Sprintf("the plugin ignores per-resource rename (not supported upstream yet) and would advertise %s, not %s", quote(full), quote(target)),
			"remove rename; to advertise "+shared+" set renameByDefault: true; other names are not possible")
	}
}

func (v *validator) devices(path string, d *Devices) {
	if d == nil || d.All {
		return
	}
	switch {
	case d.List != nil && d.Count != 0:
		v.add(path, "sets both a count and a list", `keep one: "all", a count, or a list`)
	case d.List != nil:
		v.deviceList(path, d.List)
	case d.Count < 0:
		v.add(path, fmt.Sprintf("count %d is negative: the plugin refuses to start", d.Count), `use a positive count, or "all"`)
	case d.Count == 0:
		v.add(path, "a count of 0 selects no GPU: the plugin refuses to start", `use "all", or a positive count`)
	}
	v.add(path, `the plugin ignores devices other than "all" (selecting GPUs is not supported upstream yet) and shares every GPU`,
		"remove devices, or write devices: all")
}

// deviceKind classifies a devices entry along two axes: how the device is
// named (index or UUID) and what it is (full GPU or MIG device).
type deviceKind struct{ uuid, mig bool }

const uuidPattern = `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`

var (
	gpuIndexRe = regexp.MustCompile(`^[0-9]+$`)
	migIndexRe = regexp.MustCompile(`^[0-9]+:[0-9]+$`)
	gpuUUIDRe  = regexp.MustCompile(`^GPU-` + uuidPattern + `$`)
	migUUIDRe  = regexp.MustCompile(`^MIG-(` + uuidPattern + `|GPU-` + uuidPattern + `/[0-9]+/[0-9]+)$`)
)

func (v *validator) deviceList(path string, list []string) {
	if len(list) == 0 {
		v.add(path, "the list is empty and selects no GPU", "list GPU indices such as [0, 1], or write devices: all")
		return
	}
	seen := map[string]int{}
	kinds := map[deviceKind]bool{}
	for i, ref := range list {
		p := indexPath(path, i)
		kind, prob := classifyDevice(ref)
		if prob.msg != "" {
			v.addProblem(p, prob)
			continue
		}
		key := ref
		if n, err := strconv.Atoi(ref); err == nil {
			key = strconv.Itoa(n) // "00" and "0" are the same GPU
		}
		if j, dup := seen[key]; dup {
			v.add(p, fmt.Sprintf("%s is listed twice (first at [%d])", quote(ref), j), "remove the repeat")
			continue
		}
		seen[key] = i
		kinds[kind] = true
	}
	var byUUID, byIndex, mig, gpu bool
	for k := range kinds {
		byUUID, byIndex = byUUID || k.uuid, byIndex || !k.uuid
		mig, gpu = mig || k.mig, gpu || !k.mig
	}
	if byUUID && byIndex {
		v.add(path, "mixes indices and UUIDs: indices change when GPUs are added or removed, UUIDs do not",
			"name every device the same way, preferably by the UUIDs nvidia-smi -L prints")
	}
	if mig && gpu {
		v.add(path, "mixes full GPUs and MIG devices: one resource is either full GPUs (nvidia.com/gpu) or MIG devices (nvidia.com/mig-...)",
			"list only one kind of device")
	}
}

func classifyDevice(ref string) (deviceKind, problem) {
	upper := strings.ToUpper(ref)
	switch {
	case gpuIndexRe.MatchString(ref):
		return deviceKind{}, problem{}
	case migIndexRe.MatchString(ref):
		return deviceKind{mig: true}, problem{}
	case gpuUUIDRe.MatchString(ref):
		return deviceKind{uuid: true}, problem{}
	case migUUIDRe.MatchString(ref):
		return deviceKind{uuid: true, mig: true}, problem{}
	case strings.HasPrefix(ref, "-") && isInteger(ref):
		return deviceKind{}, problem{quote(ref) + " is a negative GPU index: the plugin refuses to start",
			"GPU indices start at 0, as nvidia-smi lists them"}
	case strings.HasPrefix(upper, "GPU-") || strings.HasPrefix(upper, "MIG-"):
		if prefix := ref[:4]; prefix != upper[:4] {
			return deviceKind{}, problem{fmt.Sprintf("%s: the %s prefix is case-sensitive", quote(ref), upper[:4]),
				"write " + upper[:4] + ref[4:]}
		}
		return deviceKind{}, problem{quote(ref) + " is a malformed UUID: the plugin refuses to start",
			"copy it from nvidia-smi -L: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, MIG-<uuid> or MIG-GPU-<uuid>/<gi>/<ci>"}
	case strings.Contains(ref, ":"):
		return deviceKind{}, problem{quote(ref) + " is a malformed MIG index: the plugin refuses to start",
			"write <gpu index>:<mig index>, such as 0:1"}
	}
	return deviceKind{}, problem{quote(ref) + " is not a GPU index, MIG index or UUID: the plugin refuses to start",
		"list GPU indices such as 0, MIG indices such as 0:1, or UUIDs from nvidia-smi -L"}
}

func (v *validator) imex(x *Imex) {
	if x == nil || len(x.ChannelIDs) == 0 || slices.Equal(x.ChannelIDs, []int{0}) {
		return
	}
	v.add("imex.channelIDs", fmt.Sprintf("%v is not supported: the plugin accepts only [] or [0]", x.ChannelIDs),
		"use channelIDs: [0], or remove it")
}
