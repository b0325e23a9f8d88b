// Package doctor runs the reference cluster's troubleshooting runbook (the
// seed's "vLLM Pod Can't Start", "CUDA Out of Memory" and "GPU Not Visible
// in Pod") as checks, each with a verdict, the evidence it saw and the
// remedy.
//
// It is pure logic, like package ledger: the caller gathers the evidence
// (package doctor/gather does it from a live cluster) and Judge turns it into
// a Report. Every check is a function of gathered structs, so each is
// table-tested without a cluster.
package doctor

import (
	"cmp"
	"fmt"
	"slices"
)

// Verdict is a check's outcome.
type Verdict string

// Verdicts, from best to worst.
const (
	OK   Verdict = "ok"
	Warn Verdict = "warn"
	Fail Verdict = "fail"
)

func (v Verdict) rank() int {
	switch v {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// worse reports whether v is worse than w.
func (v Verdict) worse(w Verdict) bool { return v.rank() > w.rank() }

// Check names, stable for -o json consumers and tests.
const (
	CheckWebhookRegistration = "webhook-registration"
	CheckWebhookDeployment   = "webhook-deployment"
	CheckWebhookEndpoints    = "webhook-endpoints"
	CheckWebhookTLS          = "webhook-tls"
	CheckWebhookCABundle     = "webhook-ca-bundle"
	CheckWebhookCertExpiry   = "webhook-certificate-expiry"
	CheckWebhookDryRun       = "webhook-dry-run"
	CheckVRAM                = "vram-risk"

	CheckPods         = "pods"
	CheckShares       = "gpu-shares"
	CheckPlacement    = "placement"
	CheckScheduling   = "scheduling"
	CheckAnnotation   = "annotation"
	CheckRuntimeClass = "runtime-class"
	CheckDevices      = "devices"
	CheckNvidiaEnv    = "nvidia-env"
	CheckCrash        = "crash"
	CheckCUDAOOM      = "cuda-oom"
)

// Result is one check's outcome.
type Result struct {
	Check   string  `json:"check"`
	Verdict Verdict `json:"verdict"`
	// Object is what the check looked at, kubectl style: pod/NAME,
	// node/NAME, mutatingwebhookconfiguration/NAME.
	Object   string `json:"object,omitempty"`
	Evidence string `json:"evidence"`
	// Remedy is empty when there is nothing to do.
	Remedy string `json:"remedy,omitempty"`
}

// Section groups the results about one subject: the cluster-wide checks
// (Kind "Cluster") or one workload.
type Section struct {
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name,omitempty"`
	Verdict   Verdict  `json:"verdict"` // the worst of Results
	Results   []Result `json:"results"`
}

// Title names the section the way kubectl names objects.
func (s Section) Title() string {
	if s.Name == "" {
		return s.Kind
	}
	if s.Namespace == "" {
		return s.Kind + " " + s.Name
	}
	return s.Kind + " " + s.Namespace + "/" + s.Name
}

// Summary counts verdicts.
type Summary struct {
	OK        int `json:"ok"`
	Warn      int `json:"warn"`
	Fail      int `json:"fail"`
	Workloads int `json:"workloads"`
}

// Report is what doctor found.
type Report struct {
	// Target is the KIND/NAME asked about; empty when every GPU workload
	// was checked.
	Target   string    `json:"target,omitempty"`
	Sections []Section `json:"sections"`
	Summary  Summary   `json:"summary"`
}

// Failed reports whether any check failed: the command's exit status.
func (r *Report) Failed() bool { return r.Summary.Fail > 0 }

// Find returns the results of the named check in the section titled title
// ("Cluster", "Deployment ai-dev/vllm-server").
func (r *Report) Find(title, check string) []Result {
	var out []Result
	for _, s := range r.Sections {
		if s.Title() != title {
			continue
		}
		for _, res := range s.Results {
			if res.Check == check {
				out = append(out, res)
			}
		}
	}
	return out
}

// Judge runs every check on the gathered evidence.
func Judge(ev *Evidence) *Report {
	r := &Report{Target: ev.Target}
	if cluster := judgeCluster(ev); len(cluster) > 0 {
		r.Sections = append(r.Sections, newSection("Cluster", "", "", cluster))
	}
	workloads := slices.Clone(ev.Workloads)
	slices.SortFunc(workloads, func(a, b WorkloadEvidence) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind))
	})
	for i := range workloads {
		w := &workloads[i]
		r.Sections = append(r.Sections, newSection(w.Kind, w.Namespace, w.Name, judgeWorkload(ev, w)))
	}
	r.Summary.Workloads = len(workloads)
	for _, s := range r.Sections {
		for _, res := range s.Results {
			switch res.Verdict {
			case OK:
				r.Summary.OK++
			case Warn:
				r.Summary.Warn++
			case Fail:
				r.Summary.Fail++
			}
		}
	}
	return r
}

func newSection(kind, namespace, name string, results []Result) Section {
	s := Section{Kind: kind, Namespace: namespace, Name: name, Verdict: OK, Results: results}
	for _, res := range results {
		if res.Verdict.worse(s.Verdict) {
			s.Verdict = res.Verdict
		}
	}
	return s
}

// judgeCluster runs the webhook checks (when gathered) and the VRAM risk of
// the nodes that concern the report.
func judgeCluster(ev *Evidence) []Result {
	var out []Result
	if ev.Webhook != nil {
		out = append(out, JudgeWebhook(ev.Webhook, ev.Now)...)
	}
	if ev.DevicePlugin != nil {
		out = append(out, JudgeDevicePlugin(ev.DevicePlugin, ev.Nodes, ev.Ledger)...)
	}
	if ev.Ledger != nil {
		for _, n := range ev.Ledger.Nodes {
			if ev.concernsNode(n.Name) {
				out = append(out, JudgeNodeVRAM(n))
			}
		}
	}
	return out
}

// concernsNode says whether node's VRAM risk belongs in the report: every
// GPU node when no target was named, else the nodes the target runs on or
// may be scheduled to.
func (ev *Evidence) concernsNode(node string) bool {
	if ev.Target == "" {
		return true
	}
	for i := range ev.Workloads {
		if slices.Contains(workloadNodes(ev, &ev.Workloads[i]), node) {
			return true
		}
	}
	return false
}

// judgeWorkload runs the workload's own checks, then the pod checks of each
// of its pods, merged per check so that three replicas do not give three
// identical rows.
func judgeWorkload(ev *Evidence, w *WorkloadEvidence) []Result {
	var out []Result
	if w.Kind != KindPod {
		out = append(out, JudgeWorkloadPods(w))
	}
	out = append(out, JudgeAnnotation(w, ev.profiles()))
	out = append(out, JudgeShares(w, ev.Ledger, ev.Nodes))
	out = append(out, JudgePlacement(w, ev.Nodes, ev.Ledger))
	if len(w.Pods) == 0 {
		// Without a pod there is nothing the webhook, the scheduler or a
		// kubelet did yet; the template's runtime class can still be
		// checked.
		in := &PodInput{PodEvidence: PodEvidence{Pod: w.templatePod()}, Template: true, RuntimeClasses: ev.RuntimeClasses}
		return append(out, JudgeRuntimeClass(in))
	}
	var perPod []Result
	for i := range w.Pods {
		in := ev.podInput(w, &w.Pods[i])
		for _, check := range podChecks {
			perPod = append(perPod, check(in))
		}
	}
	return append(out, mergeByCheck(perPod)...)
}

// mergeByCheck keeps, for each check, the worst result of any pod, and
// says how many pods share that verdict; checks keep the order in which
// they first appear. A check run on one pod is left as it is.
func mergeByCheck(results []Result) []Result {
	var order []string
	byCheck := map[string][]Result{}
	for _, res := range results {
		if _, seen := byCheck[res.Check]; !seen {
			order = append(order, res.Check)
		}
		byCheck[res.Check] = append(byCheck[res.Check], res)
	}
	out := make([]Result, 0, len(order))
	for _, check := range order {
		pods := byCheck[check]
		worst := pods[0]
		for _, res := range pods[1:] {
			if res.Verdict.worse(worst.Verdict) {
				worst = res
			}
		}
		if len(pods) > 1 {
			same := 0
			for _, res := range pods {
				if res.Verdict == worst.Verdict {
					same++
				}
			}
			worst.Evidence = fmt.Sprintf("%s (%d of %d pods %s)", worst.Evidence, same, len(pods), worst.Verdict)
		}
		out = append(out, worst)
	}
	return out
}
