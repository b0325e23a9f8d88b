package ops

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// SharesOptions configure TuneShares.
type SharesOptions struct {
	// Shares is the new request (and limit) per pod's container, at least 1.
	Shares int64
	// Container defaults to the one container requesting a GPU resource
	// (or the only container).
	Container string
	// Resource defaults to the GPU resource the container requests, else
	// nvidia.com/gpu.shared.
	Resource string
	DryRun   bool
}

// SharesResult is what TuneShares changed, or would change with DryRun,
// and the numbers it checked.
type SharesResult struct {
	Workload  workload.Ref `json:"workload"`
	Container string       `json:"container"`
	Resource  string       `json:"resource"`
	Old       int64        `json:"old"`
	New       int64        `json:"new"`
	// Replicas the check counts: spec.replicas, or for a released
	// workload the replicas restore brings back.
	Replicas    int32    `json:"replicas"`
	Nodes       []string `json:"nodes,omitempty"`
	Allocatable int64    `json:"allocatable"`
	Free        int64    `json:"free"`
	Held        int64    `json:"held"`
	// Needed is what the nodes must give the workload at the rollout's
	// peak; Rolling when that peak has new pods beside old ones.
	Needed  int64 `json:"needed"`
	Rolling bool  `json:"rolling,omitempty"`
	// Annotation says the count is the pod template's gpu-shares
	// annotation, which the webhook turns into the request, rather than
	// the container's own request.
	Annotation bool   `json:"annotation,omitempty"`
	Changed    bool   `json:"changed"`
	DryRun     bool   `json:"dryRun,omitempty"`
	Message    string `json:"message"`
}

// TuneShares sets the requests and limits of the workload's GPU resource
// in one patch, after checking against the live ledger that its node(s)
// can give it that many shares; a refusal gives the numbers and who holds
// the rest.
func TuneShares(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, opts SharesOptions) (SharesResult, error) {
	res := SharesResult{Workload: ref, New: opts.Shares, DryRun: opts.DryRun}
	if opts.Shares < 1 {
		return res, fmt.Errorf("%d shares: ask for at least 1 (gpuslice release frees them all)", opts.Shares)
	}
	report, err := snapshot.Ledger(ctx, cs, ledger.Options{})
	if err != nil {
		return res, fmt.Errorf("checking that %d shares fit: %w", opts.Shares, err)
	}
	err = modifyWorkload(ctx, cs, ref, opts.DryRun, func(w *appsWorkload) (bool, error) {
		var err error
		res, err = decideShares(w, report, opts)
		return res.Changed, err
	})
	res.DryRun = opts.DryRun
	return res, err
}

// decideShares applies the new share count to w in memory if it fits.
//
// It fits when the nodes' free shares plus those the workload holds cover
// the rollout's peak. With Recreate (or a StatefulSet) old pods stop first
// and the peak is new-per-pod x replicas. A RollingUpdate with
// maxUnavailable 0 starts each new pod before stopping an old one, so at
// step k it runs k+1 new pods beside the old ones not yet replaced.
func decideShares(w *appsWorkload, report *ledger.Report, opts SharesOptions) (SharesResult, error) {
	res := SharesResult{Workload: w.Ref, New: opts.Shares, Replicas: w.Replicas()}
	annotated, hasAnnotation := w.template.Annotations[workload.AnnotationShares]
	if opts.Container == "" && hasAnnotation {
		opts.Container = w.template.Annotations[workload.AnnotationSharesContainer]
	}
	c, err := pickContainer(w, opts.Container)
	if err != nil {
		return res, err
	}
	res.Container = c.Name
	if res.Resource, err = pickResource(c, opts.Resource); err != nil {
		return res, fmt.Errorf("%s container %s: %w", w.Qualified(), c.Name, err)
	}
	name := corev1.ResourceName(res.Resource)
	res.Old = ledger.ContainerRequest(*c, name)
	// The webhook adds gpu-shares' request to a container without one: the
	// annotation is then the count, and what to change.
	if hasAnnotation && res.Old == 0 && res.Resource == workload.SharedResource {
		n, err := strconv.ParseInt(strings.TrimSpace(annotated), 10, 64)
		if err != nil || n < 1 {
			return res, fmt.Errorf("%s: pod template annotation %s=%q is not a share count: set it to a whole number such as \"2\" first", w.Qualified(), workload.AnnotationShares, annotated)
		}
		res.Old, res.Annotation = n, true
	}
	if res.Old == res.New {
		res.Message = fmt.Sprintf("%s container %s already requests %d %s; nothing to change", w.Qualified(), c.Name, res.New, res.Resource)
		if res.Annotation {
			res.Message = fmt.Sprintf("%s already has %s: \"%d\" (the webhook's request of %s); nothing to change", w.Qualified(), workload.AnnotationShares, res.New, res.Resource)
		}
		return res, nil
	}

	var released string
	if rec, err := readRecord(w); err == nil && rec != nil && res.Replicas == 0 {
		res.Replicas = rec.Replicas
		released = fmt.Sprintf(" (released; counting the %d replica(s) restore brings back)", rec.Replicas)
	}
	p := place(report, w.Ref, w.template, res.Resource)
	if len(p.nodes) == 0 {
		return res, fmt.Errorf("no GPU node offers %s to %s: check --resource, the template's node selector, and that the NVIDIA device plugin runs", res.Resource, w.Qualified())
	}
	res.Nodes = p.names()
	var pods int64
	var others []string
	for _, n := range p.nodes {
		u := usage(n, res.Resource) // place keeps only nodes offering it
		res.Free += u.Free
		res.Allocatable += u.Allocatable
		for _, wl := range n.Workloads {
			switch {
			case wl.Resource != res.Resource || wl.Shares == 0:
			case wl.Namespace == w.Namespace && wl.Kind == w.Kind && wl.Name == w.Name:
				res.Held += wl.Shares
				pods += int64(wl.Pods)
			default:
				others = append(others, fmt.Sprintf("%s %d", wl.Name, wl.Shares))
			}
		}
	}

	var podNow int64
	for _, ctr := range w.template.Spec.Containers {
		podNow += ledger.ContainerRequest(ctr, name)
	}
	if res.Annotation {
		podNow += res.Old
	}
	podNew := podNow - res.Old + res.New
	replicas := int64(res.Replicas)
	res.Needed = podNew * replicas
	res.Rolling = pods > 0 && w.rollingKeepsOld(res.Replicas)
	if res.Rolling {
		oldPerPod := res.Held / pods
		for k := range replicas {
			res.Needed = max(res.Needed, podNew*(k+1)+oldPerPod*max(pods-k, 0))
		}
	}
	where := strings.Join(res.Nodes, ", ")
	if more := res.Needed - res.Free - res.Held; more > 0 {
		verb := "has"
		if len(res.Nodes) > 1 {
			verb = "have"
		}
		ask := fmt.Sprint(res.New)
		if res.Replicas != 1 {
			ask += fmt.Sprintf(" × %d replicas", res.Replicas)
		}
		msg := fmt.Sprintf("%s %s %d free of %d %s; %s holds %d; asking %s needs %d more",
			where, verb, res.Free, res.Allocatable, res.Resource, w.Name, res.Held, ask, more)
		if len(others) > 0 {
			msg += fmt.Sprintf(": free them first (%s hold the rest)", strings.Join(others, ", "))
		} else {
			msg += ": nothing else holds any, ask for fewer"
		}
		if res.Rolling {
			msg += fmt.Sprintf("; its rolling update starts each new pod before stopping an old one, with strategy Recreate it would need %d", podNew*replicas)
		}
		return res, fmt.Errorf("%s%s", msg, released)
	}

	what := "container " + c.Name
	if res.Annotation {
		what = "annotation " + workload.AnnotationShares
		w.template.Annotations[workload.AnnotationShares] = strconv.FormatInt(res.New, 10)
	} else {
		setRequest(c, name, res.New)
	}
	res.Changed = true
	res.Message = fmt.Sprintf("%s %s: %s %d → %d per pod, %d replica(s)%s; %s: %d free + %d held, %d needed",
		w.Qualified(), what, res.Resource, res.Old, res.New, res.Replicas, released, where, res.Free, res.Held, res.Needed)
	if res.New > res.Old {
		res.Message += fmt.Sprintf("; note: %d shares reserve %d of the node's time-slicing replicas, not more GPU time (every process gets an equal slice)", res.New, res.New)
	}
	return res, nil
}

// pickContainer is the named container, else the one requesting a GPU
// resource, else the only one.
func pickContainer(w *appsWorkload, name string) (*corev1.Container, error) {
	cs := w.template.Spec.Containers
	var names, gpu []string
	for _, c := range cs {
		names = append(names, c.Name)
		if len(gpuResources(c)) > 0 {
			gpu = append(gpu, c.Name)
		}
	}
	switch {
	case name != "":
	case len(gpu) == 1:
		name = gpu[0]
	case len(gpu) > 1:
		return nil, fmt.Errorf("containers %s of %s all request GPU resources: pick one with --container", strings.Join(gpu, ", "), w.Qualified())
	case len(cs) == 1:
		name = cs[0].Name
	default:
		return nil, fmt.Errorf("no container of %s requests a GPU resource: pick one of %s with --container", w.Qualified(), strings.Join(names, ", "))
	}
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i], nil
		}
	}
	return nil, fmt.Errorf("%s has no container %q: it has %s", w.Qualified(), name, strings.Join(names, ", "))
}

// pickResource is the given resource, else the GPU resource the container
// requests, else nvidia.com/gpu.shared.
func pickResource(c *corev1.Container, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	switch have := gpuResources(*c); len(have) {
	case 0:
		return workload.SharedResource, nil
	case 1:
		return have[0], nil
	default:
		return "", fmt.Errorf("it requests %s: pick one with --resource", strings.Join(have, " and "))
	}
}

// gpuResources are the nvidia.com/ resources the container asks for.
func gpuResources(c corev1.Container) []string {
	var out []string
	for _, list := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		for name := range list {
			if strings.HasPrefix(string(name), "nvidia.com/") {
				out = appendNew(out, string(name))
			}
		}
	}
	slices.Sort(out)
	return out
}

// setRequest sets request and limit alike: extended resources cannot be
// overcommitted, so the API server wants them equal.
func setRequest(c *corev1.Container, name corev1.ResourceName, n int64) {
	q := *resource.NewQuantity(n, resource.DecimalSI)
	if c.Resources.Requests == nil {
		c.Resources.Requests = corev1.ResourceList{}
	}
	if c.Resources.Limits == nil {
		c.Resources.Limits = corev1.ResourceList{}
	}
	c.Resources.Requests[name] = q
	c.Resources.Limits[name] = q.DeepCopy()
}
