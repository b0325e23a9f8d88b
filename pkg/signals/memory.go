package signals

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/gpuslice/gpuslice/pkg/top"
)

// GPUMemory is one GPU's framebuffer memory as a source reports it.
//
// Free is what a new allocation can get, the same in every source; Used
// is as the source counts it: dcgm-exporter's FB_USED leaves out the
// driver's reservation (FB_RESERVED, a few hundred MiB), NVML's figure,
// which the agents report, includes it. Decide on Free.
type GPUMemory struct {
	Node string // Kubernetes node name
	GPU  string // index as nvidia-smi numbers it ("0")
	UUID string // "GPU-..." when known
	Used int64  // bytes
	Free int64  // bytes
}

// MemorySource reports every GPU's memory it can see.
type MemorySource interface {
	// Name says which source this is ("dcgm-exporter http://...",
	// "prometheus http://...", "gpuslice agents"), for logs and errors.
	Name() string
	// GPUMemory returns each GPU once, sorted by node then index. With
	// several targets, those that fail make the error non-nil while the
	// GPUs of the others are still returned.
	GPUMemory(ctx context.Context) ([]GPUMemory, error)
}

// key identifies a GPU across series: the UUID when the source has it,
// else the index (which is stable only until the node reboots).
func (g GPUMemory) key() [2]string {
	if g.UUID != "" {
		return [2]string{g.Node, g.UUID}
	}
	return [2]string{g.Node, "index " + g.GPU}
}

// finish de-duplicates and sorts GPUs: dcgm-exporter with pod mapping
// repeats a time-sliced GPU once per pod, and a Prometheus scraping two
// exporter pods (during a rollout) holds both. The first one seen wins;
// their memory figures are the device's, the same in every copy.
func finish(gpus []GPUMemory) []GPUMemory {
	seen := make(map[[2]string]bool, len(gpus))
	out := make([]GPUMemory, 0, len(gpus))
	for _, g := range gpus {
		if k := g.key(); !seen[k] {
			seen[k] = true
			out = append(out, g)
		}
	}
	slices.SortStableFunc(out, func(a, b GPUMemory) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), top.CompareIndex(a.GPU, b.GPU))
	})
	return out
}

// gather runs read for each of n targets in parallel and returns every GPU
// found, with the failures joined: partial data and an error, so that one
// node's broken exporter does not blind the caller to the others.
func gather(n int, read func(i int) ([]GPUMemory, error)) ([]GPUMemory, error) {
	results := make([][]GPUMemory, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = read(i) })
	}
	wg.Wait()
	return finish(slices.Concat(results...)), errors.Join(errs...)
}

// The sources, as the arbiter holds them.
var (
	_ MemorySource   = (*DCGMExporter)(nil)
	_ MemorySource   = (*Prometheus)(nil)
	_ MemorySource   = (*Agents)(nil)
	_ ActivitySource = (*Plex)(nil)
)
