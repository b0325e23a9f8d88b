package ledger

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gpuslice/gpuslice/pkg/podenv"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const (
	mebi = int64(1) << 20
	gibi = int64(1) << 30
)

// MemoryRange is an expected amount of GPU memory; Min == Max for a single
// value.
type MemoryRange struct {
	Min resource.Quantity `json:"min"`
	Max resource.Quantity `json:"max"`
}

// ParseMemoryRange parses "2Gi" or "2Gi-3Gi". A bare number before the dash
// takes the unit after it, so "1-2Gi" (the seed's "~1-2GB" style) means
// 1Gi-2Gi rather than one byte to 2Gi.
func ParseMemoryRange(s string) (MemoryRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return MemoryRange{}, errors.New("empty memory range")
	}
	lo, hi, isRange := strings.Cut(s, "-")
	lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
	if !isRange {
		hi = lo
	}
	if lo == "" || hi == "" {
		return MemoryRange{}, fmt.Errorf("memory range %q: want QUANTITY or MIN-MAX", s)
	}
	if unit := strings.TrimLeft(hi, "0123456789."); isRange && unit != "" && isNumber(lo) {
		lo += unit
	}
	var m MemoryRange
	var err error
	if m.Min, err = resource.ParseQuantity(lo); err != nil {
		return MemoryRange{}, fmt.Errorf("memory range %q: %w", s, err)
	}
	if m.Max, err = resource.ParseQuantity(hi); err != nil {
		return MemoryRange{}, fmt.Errorf("memory range %q: %w", s, err)
	}
	if err := m.validate(); err != nil {
		return MemoryRange{}, fmt.Errorf("memory range %q: %w", s, err)
	}
	return m, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func (m MemoryRange) validate() error {
	switch {
	case m.Min.Sign() < 0:
		return errors.New("negative memory")
	case m.Min.Cmp(m.Max) > 0:
		return fmt.Errorf("minimum %s is above maximum %s", m.Min.String(), m.Max.String())
	}
	return nil
}

// String writes the range the way tables show it: "1Gi-2Gi", "8.4Gi".
func (m MemoryRange) String() string {
	return formatRange(m.Min.Value(), m.Max.Value())
}

// workloadMemory adds up the expected VRAM of a workload's pods on a node.
// The source is the first pod's; one pod without an estimate makes the
// whole workload unknown, since a partial sum would understate the risk.
func (b *builder) workloadMemory(g *group, gpuMemory int64) (*MemoryRange, string) {
	var total *MemoryRange
	var source string
	for _, pod := range g.pods {
		m, src := b.podMemory(pod, g.key.name, gpuMemory)
		if m == nil {
			return nil, src
		}
		if total == nil {
			total, source = &MemoryRange{Min: m.Min.DeepCopy(), Max: m.Max.DeepCopy()}, src
			continue
		}
		total.Min.Add(m.Min)
		total.Max.Add(m.Max)
	}
	if n := len(g.pods); n > 1 {
		source += fmt.Sprintf(", x%d pods", n)
	}
	return total, source
}

// podMemory estimates one pod's VRAM: its gpu-memory annotation, else its
// GPU_MEMORY_UTILIZATION as a fraction of one GPU (vLLM sizes itself
// against the single GPU it runs on), else Options.DefaultMemory for the
// workload's name. A nil
// range comes with the reason it is unknown.
func (b *builder) podMemory(pod *corev1.Pod, owner string, gpuMemory int64) (*MemoryRange, string) {
	if v, ok := pod.Annotations[workload.AnnotationMemory]; ok {
		m, err := ParseMemoryRange(v)
		if err != nil {
			// A typo must be fixed, not silently replaced by a default.
			return nil, fmt.Sprintf("invalid %s annotation: %v", workload.AnnotationMemory, err)
		}
		return &m, "annotation " + workload.AnnotationMemory
	}

	reason := "unknown: no " + workload.AnnotationMemory + " annotation"
	if v, from, ok := b.gpuMemoryUtilization(pod); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		switch {
		case err != nil || f <= 0 || f > 1:
			return nil, fmt.Sprintf("invalid %s=%q (%s): want a fraction in (0, 1]", workload.EnvGPUMemoryUtilization, v, from)
		case gpuMemory == 0:
			reason = fmt.Sprintf("unknown: %s=%s but the node's GPU memory is unknown", workload.EnvGPUMemoryUtilization, v)
		default:
			// Whole MiB keeps the quantity readable ("8602Mi").
			q := *resource.NewQuantity(int64(math.Round(f*float64(gpuMemory)/float64(mebi)))*mebi, resource.BinarySI)
			return &MemoryRange{Min: q, Max: q.DeepCopy()},
				fmt.Sprintf("%s=%s of %s, %s", workload.EnvGPUMemoryUtilization, v, formatBytes(gpuMemory), from)
		}
	}

	for _, key := range []string{nsName(pod.Namespace, owner), owner} {
		if m, ok := b.opt.DefaultMemory[key]; ok {
			return &m, "default for " + key
		}
	}
	return nil, reason
}

// gpuMemoryUtilization finds the variable in the pod's containers the way
// the kubelet resolves it (podenv.Lookup): the first container that sets
// it, from a value or a ConfigMap. Secrets are not read.
func (b *builder) gpuMemoryUtilization(pod *corev1.Pod) (value, from string, found bool) {
	configMaps := func(name string) *corev1.ConfigMap { return b.configMaps[nsName(pod.Namespace, name)] }
	for i := range pod.Spec.Containers {
		if s, ok := podenv.Lookup(pod.Namespace, &pod.Spec.Containers[i], configMaps, workload.EnvGPUMemoryUtilization); ok {
			return s.Value, s.From, true
		}
	}
	return "", "", false
}

// formatBytes writes memory the way the tables show it: Gi with at most
// one decimal, Mi below 1Gi.
func formatBytes(n int64) string {
	switch {
	case n >= gibi:
		return trimFloat(float64(n)/float64(gibi), 1) + "Gi"
	case n >= mebi:
		return trimFloat(float64(n)/float64(mebi), 0) + "Mi"
	}
	return strconv.FormatInt(n, 10)
}

func formatRange(lo, hi int64) string {
	if lo == hi {
		return formatBytes(lo)
	}
	return formatBytes(lo) + "-" + formatBytes(hi)
}
