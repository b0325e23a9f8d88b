// Package top is `gpuslice top`: the GPU memory each pod actually holds,
// read from the node agents, beside the budget the ledger expects it to
// keep (its gpu-memory annotation, or GPU_MEMORY_UTILIZATION times the
// GPU's memory), with pods over budget flagged.
package top

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
)

// Defaults for finding the agents.
const (
	DefaultAgentNamespace = "gpu-system"
	DefaultAgentSelector  = "app.kubernetes.io/component=agent"
)

// Pod statuses.
const (
	StatusOK         = "ok"          // within its budget (or under)
	StatusOverBudget = "over-budget" // above the budget's maximum
	StatusIdle       = "idle"        // a GPU pod holding no GPU memory now
	StatusNoBudget   = "no-budget"   // holds memory, declares nothing
)

// Options select what top shows and where it reads it.
type Options struct {
	// Namespace limits the pods shown ("" = all); host and unknown
	// processes are shown only without it.
	Namespace string
	// Node limits the agents scraped ("" = all).
	Node string
	// AgentNamespace and AgentSelector find the agent pods; AgentPort is
	// the port in the pods proxy path.
	AgentNamespace string
	AgentSelector  string
	AgentPort      int
	// AgentURLs, when set, are scraped directly instead of through the API
	// server's pods proxy.
	AgentURLs  []string
	HTTPClient *http.Client
}

// Report is what top shows.
type Report struct {
	// Pods are sorted by memory held, most first.
	Pods []PodUsage `json:"pods"`
	// Unattributed is memory held outside any known pod, by reason.
	Unattributed []Unattributed `json:"unattributed,omitempty"`
	GPUs         []GPUUsage     `json:"gpus"`
	Agents       []AgentStatus  `json:"agents"`
	Warnings     []string       `json:"warnings,omitempty"`
}

// PodUsage is one pod: what it holds and what it declared.
type PodUsage struct {
	Namespace   string           `json:"namespace"`
	Name        string           `json:"name"`
	Node        string           `json:"node"`
	GPUs        []string         `json:"gpus,omitempty"`
	MemoryBytes int64            `json:"memoryBytes"`
	Containers  []ContainerUsage `json:"containers,omitempty"`
	// Budget is nil when the pod declares none; BudgetSource says where it
	// comes from, or why it is unknown.
	Budget       *ledger.MemoryRange `json:"budget,omitempty"`
	BudgetSource string              `json:"budgetSource"`
	Status       string              `json:"status"`
	OverBytes    int64               `json:"overBytes,omitempty"`
}

// ContainerUsage is one container's memory on one GPU.
type ContainerUsage struct {
	Name        string `json:"name"`
	GPU         string `json:"gpu"`
	MemoryBytes int64  `json:"memoryBytes"`
}

// Unattributed is memory on a GPU that no pod accounts for.
type Unattributed struct {
	Node        string `json:"node"`
	GPU         string `json:"gpu"`
	Reason      string `json:"reason"`
	MemoryBytes int64  `json:"memoryBytes"`
}

// GPUUsage is one GPU as its agent read it.
type GPUUsage struct {
	Node               string   `json:"node"`
	Index              string   `json:"index"`
	UUID               string   `json:"uuid"`
	Model              string   `json:"model"`
	TotalBytes         int64    `json:"totalBytes"`
	UsedBytes          int64    `json:"usedBytes"`
	FreeBytes          int64    `json:"freeBytes"`
	Utilization        *float64 `json:"utilization,omitempty"`
	TemperatureCelsius *float64 `json:"temperatureCelsius,omitempty"`
}

// AgentStatus is one agent scraped, or not.
type AgentStatus struct {
	Node          string `json:"node"`
	Pod           string `json:"pod,omitempty"`
	URL           string `json:"url,omitempty"`
	NVMLAvailable bool   `json:"nvmlAvailable"`
	// Error is why the agent could not be scraped, or why its NVML is down.
	Error string `json:"error,omitempty"`
}

// Collect scrapes the agents and sets each pod's use against its budget.
func Collect(ctx context.Context, cs kubernetes.Interface, o Options) (*Report, error) {
	if o.AgentPort == 0 {
		o.AgentPort = agent.DefaultPort
	}
	r := &Report{Pods: []PodUsage{}, GPUs: []GPUUsage{}}
	scraped, err := scrapeAgents(ctx, cs, o, r)
	if err != nil {
		return nil, err
	}
	in, err := snapshot.Take(ctx, cs, ledger.Options{})
	if err != nil {
		return nil, err
	}
	j := newJoin(in, o)
	for _, am := range scraped {
		j.addAgent(am)
		r.GPUs = append(r.GPUs, am.gpus...)
		if o.Namespace == "" {
			r.Unattributed = append(r.Unattributed, am.unattributed...)
		}
	}
	r.Pods = j.finish()
	slices.SortFunc(r.Unattributed, func(a, b Unattributed) int { return cmp.Compare(b.MemoryBytes, a.MemoryBytes) })
	slices.SortStableFunc(r.GPUs, func(a, b GPUUsage) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), compareIndex(a.Index, b.Index))
	})
	return r, nil
}

// scrapeAgents reads every agent in parallel. An agent that fails becomes
// a warning; only finding none, or none answering, is an error.
func scrapeAgents(ctx context.Context, cs kubernetes.Interface, o Options, r *Report) ([]*agentMetrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	type target struct {
		pod *corev1.Pod
		url string
	}
	var targets []target
	if len(o.AgentURLs) > 0 {
		for _, u := range o.AgentURLs {
			targets = append(targets, target{url: u})
		}
	} else {
		pods, err := cs.CoreV1().Pods(o.AgentNamespace).List(ctx, metav1.ListOptions{LabelSelector: o.AgentSelector})
		if err != nil {
			if apierrors.IsForbidden(err) {
				return nil, fmt.Errorf("listing agent pods in namespace %s is forbidden: %w; grant list on pods there", o.AgentNamespace, err)
			}
			return nil, fmt.Errorf("listing agent pods in namespace %s: %w", o.AgentNamespace, err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if o.Node == "" || p.Spec.NodeName == o.Node {
				targets = append(targets, target{pod: p})
			}
		}
		if len(targets) == 0 {
			where := ""
			if o.Node != "" {
				where = " on node " + o.Node
			}
			return nil, fmt.Errorf("no gpuslice agent pod%s in namespace %s with labels %s: deploy the agent DaemonSet (docs/agent.md), or set --agent-namespace and --agent-selector", where, o.AgentNamespace, o.AgentSelector)
		}
	}
	client := o.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	results := make([]*agentMetrics, len(targets))
	statuses := make([]AgentStatus, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			st := &statuses[i]
			var body []byte
			var err error
			if t.pod != nil {
				st.Node, st.Pod = t.pod.Spec.NodeName, t.pod.Name
				if t.pod.Status.Phase != corev1.PodRunning {
					err = fmt.Errorf("agent pod %s/%s on node %s is %s, not Running", t.pod.Namespace, t.pod.Name, t.pod.Spec.NodeName, orUnknown(string(t.pod.Status.Phase)))
				} else {
					body, err = scrapeThroughProxy(ctx, cs, t.pod, o.AgentPort)
				}
			} else {
				st.URL = t.url
				body, err = scrapeURL(ctx, client, t.url)
			}
			if err == nil {
				results[i], err = parseMetrics(body)
			}
			if err != nil {
				st.Error = err.Error()
				return
			}
			am := results[i]
			if st.Node == "" {
				st.Node = am.node
			} else if am.node == "" {
				am.node = st.Node
			}
			st.NVMLAvailable = am.nvmlAvailable
			if !am.nvmlAvailable {
				st.Error = "NVML unavailable on the agent"
				var why string
				if t.pod != nil {
					why = readyzThroughProxy(ctx, cs, t.pod, o.AgentPort)
				} else if base, ok := strings.CutSuffix(t.url, "/metrics"); ok {
					why = readyzURL(ctx, client, base+"/readyz")
				}
				if why != "" {
					st.Error = why
				}
			}
		})
	}
	wg.Wait()
	var scraped []*agentMetrics
	var errs []error
	for i, st := range statuses {
		r.Agents = append(r.Agents, st)
		if results[i] != nil {
			if o.Node != "" && results[i].node != o.Node {
				continue // --agent-url with --node: keep that node's only
			}
			scraped = append(scraped, results[i])
		}
		if st.Error != "" {
			r.Warnings = append(r.Warnings, "agent on node "+orUnknown(st.Node)+": "+st.Error)
			if results[i] == nil {
				errs = append(errs, errors.New(st.Error))
			}
		}
	}
	if len(scraped) == 0 {
		return nil, fmt.Errorf("no agent answered: %w", errors.Join(errs...))
	}
	return scraped, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
