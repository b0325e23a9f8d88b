package signals

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// The DCGM fields read, as dcgm-exporter and Prometheus name them. Both
// are gauges in MiB.
const (
	fieldFBUsed = "DCGM_FI_DEV_FB_USED"
	fieldFBFree = "DCGM_FI_DEV_FB_FREE"
)

// DefaultNodeLabel is the label dcgm-exporter names the node with. It
// holds the exporter's NODE_NAME (set by its Helm chart and the GPU
// Operator), else the host name of its container.
const DefaultNodeLabel = "Hostname"

// dcgm-exporter's labels for a GPU: its index, UUID, and, on a MIG
// partition, the GPU instance.
const (
	labelGPU           = "gpu"
	labelUUID          = "UUID"
	labelGPUInstanceID = "GPU_I_ID"
)

// maxMiB is far above any GPU's memory (1 EiB); above it a value is one
// of DCGM's "blank" sentinels (near 2^63) that mean "not read".
const maxMiB = 1 << 40

// sample is one series of a DCGM memory field, from either source.
type sample struct {
	field  string
	labels map[string]string
	value  float64 // MiB
	err    error   // the value did not parse
}

// describe names a series by what identifies its GPU, for errors.
func (s sample) describe() string {
	var parts []string
	for _, l := range []string{labelGPU, labelUUID, DefaultNodeLabel} {
		if v, ok := s.labels[l]; ok {
			parts = append(parts, fmt.Sprintf("%s=%q", l, v))
		}
	}
	return s.field + "{" + strings.Join(parts, ",") + "}"
}

// gpuField is one GPU being assembled from its two fields.
type gpuField struct {
	GPUMemory
	used, free bool
}

// memoryFromSamples turns FB_USED and FB_FREE series into GPUs; nodeOf
// names the node of a series (or says how to make it). A GPU lacking one
// of the fields is an error, never a zero; the GPUs that have both are
// returned beside it. A series that is not a sound DCGM figure (no GPU
// label, a MIG instance, a value no GPU can have) is an error that leaves
// out every GPU of its node, whose picture is then not to be trusted,
// and only those.
func memoryFromSamples(samples []sample, nodeOf func(labels map[string]string) (string, error)) ([]GPUMemory, error) {
	if len(samples) == 0 {
		return nil, fmt.Errorf("no %s or %s series: add both to dcgm-exporter's collectors (they are in its default-counters.csv)", fieldFBUsed, fieldFBFree)
	}
	byKey := map[[2]string]*gpuField{}
	var order []*gpuField
	var errs []error
	badNodes := map[string]bool{}
	for _, s := range samples {
		g, err := gpuOf(s, nodeOf)
		var bytes int64
		if err == nil {
			bytes, err = mibToBytes(s)
		}
		if err != nil {
			errs = append(errs, err)
			if g.Node != "" {
				badNodes[g.Node] = true
			}
			continue
		}
		f := byKey[g.key()]
		if f == nil {
			f = &gpuField{GPUMemory: g}
			byKey[g.key()] = f
			order = append(order, f)
		}
		// A pod-mapped copy repeats the device's figure: keep the first.
		switch {
		case s.field == fieldFBUsed && !f.used:
			f.Used, f.used = bytes, true
		case s.field == fieldFBFree && !f.free:
			f.Free, f.free = bytes, true
		}
	}
	var out []GPUMemory
	for _, f := range order {
		if badNodes[f.Node] {
			continue
		}
		if missing := missingField(f); missing != "" {
			errs = append(errs, fmt.Errorf("GPU %s (%s) on node %s has no %s: add it to dcgm-exporter's collectors", f.GPU, orUnknown(f.UUID), f.Node, missing))
			continue
		}
		out = append(out, f.GPUMemory)
	}
	if len(badNodes) > 0 {
		errs = append(errs, fmt.Errorf("GPU memory of node(s) %s left out until their series are sound", strings.Join(slices.Sorted(maps.Keys(badNodes)), ", ")))
	}
	return out, errors.Join(errs...)
}

func missingField(f *gpuField) string {
	switch {
	case !f.used:
		return fieldFBUsed
	case !f.free:
		return fieldFBFree
	}
	return ""
}

// gpuOf is the GPU a series describes, without its memory. Its Node is
// set whenever the series names one, even with an error.
func gpuOf(s sample, nodeOf func(map[string]string) (string, error)) (GPUMemory, error) {
	g := GPUMemory{GPU: s.labels[labelGPU], UUID: s.labels[labelUUID]}
	node, err := nodeOf(s.labels)
	if err != nil {
		return g, fmt.Errorf("%s: %w", s.describe(), err)
	}
	g.Node = node
	if g.GPU == "" && g.UUID == "" {
		return g, fmt.Errorf("%s has neither a %s nor a %s label: is this dcgm-exporter's output?", s.describe(), labelGPU, labelUUID)
	}
	if id := s.labels[labelGPUInstanceID]; id != "" {
		return g, fmt.Errorf("%s is MIG instance %s: gpuslice shares whole GPUs by time-slicing and cannot read a partitioned one's memory; read the gpuslice agents instead", s.describe(), id)
	}
	return g, nil
}

// mibToBytes converts a DCGM MiB figure, refusing what is not a size.
func mibToBytes(s sample) (int64, error) {
	if s.err != nil {
		return 0, s.err
	}
	v := s.value
	if math.IsNaN(v) || v < 0 || v > maxMiB {
		return 0, fmt.Errorf("%s is %v, not a memory size in MiB (DCGM reports a blank field as a huge number: is the GPU readable by dcgm-exporter?)", s.describe(), v)
	}
	return int64(math.Round(v * (1 << 20))), nil
}

func orUnknown(s string) string {
	if s == "" {
		return "UUID unknown"
	}
	return s
}
