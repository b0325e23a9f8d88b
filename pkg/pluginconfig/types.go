package pluginconfig

// Constants shared with the device plugin.
const (
	// Version is the only config version the plugin reads.
	Version = "v1"
	// ResourcePrefix is the vendor prefix of every resource the plugin advertises.
	ResourcePrefix = "nvidia.com"
	// DefaultResourceName is the full-GPU resource.
	DefaultResourceName = ResourcePrefix + "/gpu"
	// SharedSuffix is appended to a shared resource's name by renameByDefault.
	SharedSuffix = ".shared"

	// StrategyNone, StrategyTimeSlicing and StrategyMPS are the sharing
	// strategies as the plugin names them (label nvidia.com/gpu.sharing-strategy).
	StrategyNone        = "none"
	StrategyTimeSlicing = "time-slicing"
	StrategyMPS         = "mps"

	// MinReplicas is the smallest replica count the plugin accepts.
	MinReplicas = 2
)

// Config is the plugin's configuration file. Field names and JSON/YAML tags
// follow api/config/v1 of the plugin so the file round-trips unchanged.
type Config struct {
	Version string `json:"version" yaml:"version"`
	Flags   Flags  `json:"flags,omitzero" yaml:"flags,omitempty"`
	// Resources is parsed by the plugin and then ignored; Validate reports it.
	Resources *Resources `json:"resources,omitempty" yaml:"resources,omitempty"`
	Sharing   Sharing    `json:"sharing,omitzero" yaml:"sharing,omitempty"`
	Imex      *Imex      `json:"imex,omitempty" yaml:"imex,omitempty"`
}

// Flags mirrors the plugin's command-line flags that may be set in the file.
// Pointers distinguish "unset" (the plugin's default or its CLI value wins)
// from an explicit value.
type Flags struct {
	MigStrategy             *string      `json:"migStrategy,omitempty" yaml:"migStrategy,omitempty"`
	FailOnInitError         *bool        `json:"failOnInitError,omitempty" yaml:"failOnInitError,omitempty"`
	MpsRoot                 *string      `json:"mpsRoot,omitempty" yaml:"mpsRoot,omitempty"`
	NvidiaDriverRoot        *string      `json:"nvidiaDriverRoot,omitempty" yaml:"nvidiaDriverRoot,omitempty"`
	NvidiaDevRoot           *string      `json:"nvidiaDevRoot,omitempty" yaml:"nvidiaDevRoot,omitempty"`
	GDRCopyEnabled          *bool        `json:"gdrcopyEnabled,omitempty" yaml:"gdrcopyEnabled,omitempty"`
	GDSEnabled              *bool        `json:"gdsEnabled,omitempty" yaml:"gdsEnabled,omitempty"`
	MOFEDEnabled            *bool        `json:"mofedEnabled,omitempty" yaml:"mofedEnabled,omitempty"`
	UseNodeFeatureAPI       *bool        `json:"useNodeFeatureAPI,omitempty" yaml:"useNodeFeatureAPI,omitempty"`
	DeviceDiscoveryStrategy *string      `json:"deviceDiscoveryStrategy,omitempty" yaml:"deviceDiscoveryStrategy,omitempty"`
	Plugin                  *PluginFlags `json:"plugin,omitempty" yaml:"plugin,omitempty"`
	GFD                     *GFDFlags    `json:"gfd,omitempty" yaml:"gfd,omitempty"`
}

// PluginFlags holds the flags only the device plugin reads.
type PluginFlags struct {
	PassDeviceSpecs *bool `json:"passDeviceSpecs,omitempty" yaml:"passDeviceSpecs,omitempty"`
	// DeviceListStrategy may be written as one string or a list.
	DeviceListStrategy  *StringList `json:"deviceListStrategy,omitempty" yaml:"deviceListStrategy,omitempty"`
	DeviceIDStrategy    *string     `json:"deviceIDStrategy,omitempty" yaml:"deviceIDStrategy,omitempty"`
	CDIAnnotationPrefix *string     `json:"cdiAnnotationPrefix,omitempty" yaml:"cdiAnnotationPrefix,omitempty"`
	NvidiaCTKPath       *string     `json:"nvidiaCTKPath,omitempty" yaml:"nvidiaCTKPath,omitempty"`
	ContainerDriverRoot *string     `json:"containerDriverRoot,omitempty" yaml:"containerDriverRoot,omitempty"`
	KubeletSocket       *string     `json:"kubeletSocket,omitempty" yaml:"kubeletSocket,omitempty"`
	CDIFeatureFlags     *string     `json:"cdiFeatureFlags,omitempty" yaml:"cdiFeatureFlags,omitempty"`
}

// GFDFlags holds the flags only gpu-feature-discovery reads; the file is
// shared between the two.
type GFDFlags struct {
	Oneshot         *bool     `json:"oneshot,omitempty" yaml:"oneshot,omitempty"`
	NoTimestamp     *bool     `json:"noTimestamp,omitempty" yaml:"noTimestamp,omitempty"`
	SleepInterval   *Duration `json:"sleepInterval,omitempty" yaml:"sleepInterval,omitempty"`
	OutputFile      *string   `json:"outputFile,omitempty" yaml:"outputFile,omitempty"`
	MachineTypeFile *string   `json:"machineTypeFile,omitempty" yaml:"machineTypeFile,omitempty"`
}

// Resources maps device patterns to resource names (gpus and mig).
type Resources struct {
	GPUs []Resource `json:"gpus,omitempty" yaml:"gpus,omitempty"`
	MIGs []Resource `json:"mig,omitempty" yaml:"mig,omitempty"`
}

// Resource pairs a device-name pattern with a resource name.
type Resource struct {
	Pattern string `json:"pattern" yaml:"pattern"`
	Name    string `json:"name" yaml:"name"`
}

// Sharing holds the two mutually exclusive sharing strategies.
type Sharing struct {
	TimeSlicing *ReplicatedResources `json:"timeSlicing,omitempty" yaml:"timeSlicing,omitempty"`
	MPS         *ReplicatedResources `json:"mps,omitempty" yaml:"mps,omitempty"`
}

// ReplicatedResources is the body of sharing.timeSlicing or sharing.mps.
type ReplicatedResources struct {
	// RenameByDefault advertises every shared resource as <name>.shared.
	RenameByDefault *bool `json:"renameByDefault,omitempty" yaml:"renameByDefault,omitempty"`
	// FailRequestsGreaterThanOne makes requests for more than one share fail.
	// A pointer because MPS treats "unset" as true.
	FailRequestsGreaterThanOne *bool                `json:"failRequestsGreaterThanOne,omitempty" yaml:"failRequestsGreaterThanOne,omitempty"`
	Resources                  []ReplicatedResource `json:"resources" yaml:"resources"`
}

// ReplicatedResource is one resource to share and how many shares each GPU gets.
type ReplicatedResource struct {
	Name   string `json:"name" yaml:"name"`
	Rename string `json:"rename,omitempty" yaml:"rename,omitempty"`
	// Devices nil means "all", as in the plugin.
	Devices  *Devices `json:"devices,omitempty" yaml:"devices,omitempty"`
	Replicas int      `json:"replicas" yaml:"replicas"`
}

// Devices selects the GPUs of a shared resource: exactly one of All, Count or
// List is meant to be set. List entries are GPU indices ("0"), MIG indices
// ("0:1"), or GPU/MIG UUIDs.
type Devices struct {
	All   bool
	Count int
	List  []string
}

// Imex configures IMEX channel injection.
type Imex struct {
	ChannelIDs []int `json:"channelIDs,omitempty" yaml:"channelIDs,omitempty"`
	Required   bool  `json:"required,omitempty" yaml:"required,omitempty"`
}

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// isTrue reports whether b is set and true.
func isTrue(b *bool) bool { return b != nil && *b }
