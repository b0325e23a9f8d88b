package webhook

import (
	"cmp"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Limits bound what one admission request, and all of them together, may
// cost the webhook. With failurePolicy Fail an OOM-killed webhook blocks
// every GPU pod, so a burst of large pods must be refused, not admitted
// into memory. Decoding a pod amplifies its JSON: before these bounds one
// 4 MiB pod of 250,000 empty containers allocated over 1 GiB (see
// TestWorstAllowedRequestHeap and docs/security.md).
type Limits struct {
	// MaxConcurrent is how many admissions are decoded at once; others
	// wait up to QueueWait, then get HTTP 429 with Retry-After.
	MaxConcurrent int
	QueueWait     time.Duration
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64
	// MaxContainers bounds containers, init and ephemeral containers
	// together; MaxVolumes the pod's volumes; MaxPatchOperations the
	// JSON patch the webhook answers with.
	MaxContainers      int
	MaxVolumes         int
	MaxPatchOperations int
}

// DefaultLimits leave every real pod far inside them: etcd refuses
// objects over 1.5 MiB, and a pod with 64 containers or 256 volumes is
// already extraordinary. Four admissions at once answer thousands a second.
var DefaultLimits = Limits{
	MaxConcurrent: 4, QueueWait: 2 * time.Second,
	MaxBodyBytes:  DefaultMaxBodyBytes,
	MaxContainers: 64, MaxVolumes: 256, MaxPatchOperations: 512,
}

// orDefault fills zero fields from DefaultLimits.
func (l Limits) orDefault() Limits {
	d := DefaultLimits
	return Limits{
		MaxConcurrent: cmp.Or(l.MaxConcurrent, d.MaxConcurrent), QueueWait: cmp.Or(l.QueueWait, d.QueueWait),
		MaxBodyBytes:  cmp.Or(l.MaxBodyBytes, d.MaxBodyBytes),
		MaxContainers: cmp.Or(l.MaxContainers, d.MaxContainers), MaxVolumes: cmp.Or(l.MaxVolumes, d.MaxVolumes),
		MaxPatchOperations: cmp.Or(l.MaxPatchOperations, d.MaxPatchOperations),
	}
}

// acquire takes an admission slot, waiting at most QueueWait (and never
// past the request's own deadline). It returns a release func, or nil when
// the webhook is busy and has answered 429 itself.
func (h *Handler) acquire(w http.ResponseWriter, r *http.Request) (release func()) {
	release = func() { <-h.slots }
	select {
	case h.slots <- struct{}{}:
		return release
	default:
	}
	t := time.NewTimer(h.limits.QueueWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return release
	case <-t.C:
	case <-r.Context().Done():
	}
	retry := max(1, int(h.limits.QueueWait.Round(time.Second)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	http.Error(w, fmt.Sprintf("gpuslice webhook busy: %d admissions in progress; retry, or raise --max-concurrent-admissions if this persists and memory allows", h.limits.MaxConcurrent), http.StatusTooManyRequests)
	return nil
}

// checkShape refuses a pod over the container or volume bounds; the
// message names the bound and the fix.
func (l Limits) checkShape(n podCounts) (reason, message string) {
	if n.containers > l.MaxContainers {
		return "too-many-containers", fmt.Sprintf("the pod has %d containers (init and ephemeral included), over the webhook's bound of %d: split the workload into several pods", n.containers, l.MaxContainers)
	}
	if n.volumes > l.MaxVolumes {
		return "too-many-volumes", fmt.Sprintf("the pod has %d volumes, over the webhook's bound of %d: mount fewer, larger volumes (a projected volume combines many ConfigMaps and Secrets)", n.volumes, l.MaxVolumes)
	}
	return "", ""
}
