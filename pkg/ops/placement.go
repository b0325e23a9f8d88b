package ops

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// placement is the GPU nodes a workload's shares and memory are counted on.
type placement struct {
	nodes []*ledger.NodeReport
	// running: the workload has pods bound there. Otherwise the nodes are
	// where it would run: the node its template pins by hostname, or every
	// GPU node offering the resource.
	running bool
}

func (p placement) names() []string {
	out := make([]string, len(p.nodes))
	for i, n := range p.nodes {
		out[i] = n.Name
	}
	return out
}

// place finds where ref runs in the ledger, among the nodes offering
// resource ("" for any GPU node).
func place(report *ledger.Report, ref workload.Ref, tmpl *corev1.PodTemplateSpec, resource string) placement {
	var p placement
	if report == nil {
		return p
	}
	for i := range report.Nodes {
		n := &report.Nodes[i]
		if resource != "" && usage(n, resource) == nil {
			continue
		}
		for _, wl := range n.Workloads {
			if wl.Namespace == ref.Namespace && wl.Kind == ref.Kind && wl.Name == ref.Name {
				p.nodes, p.running = append(p.nodes, n), true
				break
			}
		}
	}
	if p.running {
		return p
	}
	pinned := tmpl.Spec.NodeSelector[corev1.LabelHostname]
	for i := range report.Nodes {
		n := &report.Nodes[i]
		if pinned != "" && n.Name != pinned || resource != "" && usage(n, resource) == nil {
			continue
		}
		p.nodes = append(p.nodes, n)
	}
	return p
}

// usage is the node's line for resource, or nil.
func usage(n *ledger.NodeReport, resource string) *ledger.ResourceUsage {
	for i := range n.Resources {
		if n.Resources[i].Name == resource {
			return &n.Resources[i]
		}
	}
	return nil
}
