// Package plexhealth checks that Plex can still transcode on a GPU it
// shares: the seed's scripts/check-plex-health.sh ("Plex Transcoding Fails
// After vLLM Deployment") as a library. Failures (the pod not Running and
// Ready, the server not answering) make the report unhealthy; warnings
// (error lines in the log, devices or runtime class missing, a transcode
// that fell back to software) point at a cause without failing it.
package plexhealth

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/podenv"
)

// Defaults, as in the reference cluster.
const (
	DefaultNamespace = "media"
	DefaultSelector  = "app=plex"
	DefaultTimeout   = 5 * time.Second
	DefaultLogLines  = 200
)

// Status of a finding.
type Status string

// Statuses, from fine to failed.
const (
	OK   Status = "ok"
	Skip Status = "skip"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Checks a finding can come from.
const (
	CheckPod          = "pod"
	CheckDevices      = "devices"
	CheckRuntime      = "runtime"
	CheckCapabilities = "capabilities"
	CheckLogs         = "logs"
	CheckServer       = "server"
	CheckSessions     = "sessions"
	CheckTranscode    = "transcode"
)

// Finding is one line of the report.
type Finding struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// Options say where Plex is.
type Options struct {
	Namespace, Selector string
	// Logs reads the pods' logs; nil skips the log check.
	Logs     LogReader
	LogLines int64
	// URL of the Plex server (http://host:32400); empty skips the server
	// checks. Token, when set, also lists the sessions.
	URL, Token string
	Timeout    time.Duration
	// HTTP overrides the client built from Timeout.
	HTTP *http.Client
}

// Report is the outcome of Check.
type Report struct {
	Namespace string    `json:"namespace"`
	Selector  string    `json:"selector"`
	Pods      []string  `json:"pods"`
	Server    *Server   `json:"server,omitempty"`
	Sessions  []Session `json:"sessions,omitempty"`
	Findings  []Finding `json:"findings"`
	Healthy   bool      `json:"healthy"`
	Failures  int       `json:"failures"`
	Warnings  int       `json:"warnings"`
}

func (r *Report) add(check string, status Status, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Check: check, Status: status, Message: fmt.Sprintf(format, args...)})
}

// Check runs every check. It returns an error only when it cannot look at
// all (the API server refuses to list pods); what it finds wrong is in the
// report.
func Check(ctx context.Context, cs kubernetes.Interface, opts Options) (*Report, error) {
	opts = withDefaults(opts)
	r := &Report{Namespace: opts.Namespace, Selector: opts.Selector, Pods: []string{}}
	pods, err := cs.CoreV1().Pods(opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: opts.Selector})
	if err != nil {
		return nil, fmt.Errorf("listing pods %s in namespace %s: %w; check -n and --selector, and that this user may list pods there", opts.Selector, opts.Namespace, err)
	}
	if len(pods.Items) == 0 {
		r.add(CheckPod, Fail, "no pod in namespace %s matches %s: is Plex deployed (and scaled up)? Otherwise pass -n and --selector", opts.Namespace, opts.Selector)
	}
	configMaps := r.configMaps(ctx, cs, opts.Namespace, pods.Items)
	for i := range pods.Items {
		pod := &pods.Items[i]
		r.Pods = append(r.Pods, pod.Name)
		r.Findings = append(r.Findings, podChecks(pod, configMaps)...)
		if opts.Logs != nil {
			r.checkLogs(ctx, opts, pod)
		}
	}
	r.checkServer(ctx, opts)
	for _, f := range r.Findings {
		switch f.Status {
		case Fail:
			r.Failures++
		case Warn:
			r.Warnings++
		}
	}
	r.Healthy = r.Failures == 0
	return r, nil
}

// configMaps lists the namespace's ConfigMaps when a Plex container takes
// variables from one (NVIDIA_DRIVER_CAPABILITIES may come from there). A
// refused list is a warning: the values are then taken as missing.
func (r *Report) configMaps(ctx context.Context, cs kubernetes.Interface, namespace string, pods []corev1.Pod) podenv.ConfigMaps {
	if !slices.ContainsFunc(pods, refersToConfigMap) {
		return podenv.InList(namespace, nil)
	}
	list, err := cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		r.add(CheckCapabilities, Warn, "cannot list ConfigMaps in namespace %s, which Plex's environment refers to: %v; grant this user list on configmaps there", namespace, err)
		return podenv.InList(namespace, nil)
	}
	return podenv.InList(namespace, list.Items)
}

// refersToConfigMap says whether a container of pod takes variables from
// a ConfigMap (envFrom or valueFrom).
func refersToConfigMap(pod corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				return true
			}
		}
	}
	return false
}

func withDefaults(o Options) Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Selector == "" {
		o.Selector = DefaultSelector
	}
	if o.LogLines <= 0 {
		o.LogLines = DefaultLogLines
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.HTTP == nil {
		o.HTTP = newHTTPClient(o.Timeout)
	}
	return o
}

// checkLogs scans the end of each container's log. Logs that cannot be
// read (no kubelet, container not started, RBAC without pods/log) are a
// warning that says so: a health check must not pass on what it did not
// see.
func (r *Report) checkLogs(ctx context.Context, opts Options, pod *corev1.Pod) {
	for _, c := range pod.Spec.Containers {
		what := fmt.Sprintf("%s/%s container %s", pod.Namespace, pod.Name, c.Name)
		text, err := opts.Logs.Logs(ctx, pod.Namespace, pod.Name, c.Name, opts.LogLines)
		if err != nil {
			hint := ""
			if apierrors.IsForbidden(err) {
				hint = "; grant this user get on pods/log"
			}
			r.add(CheckLogs, Warn, "could not read the log of %s: %v%s", what, err, hint)
			continue
		}
		n, gpu, last := scanLogs(text, 3)
		if n == 0 {
			r.add(CheckLogs, OK, "no error lines in the last %d of %s", opts.LogLines, what)
			continue
		}
		r.add(CheckLogs, Warn, "%d error line(s) in the last %d of %s (%d about the GPU); latest: %s",
			n, opts.LogLines, what, gpu, strings.Join(last, " | "))
	}
}

// checkServer asks Plex who it is and, with a token, what it is playing.
func (r *Report) checkServer(ctx context.Context, opts Options) {
	if opts.URL == "" {
		r.add(CheckServer, Skip, "server not checked: pass --url (or set PLEX_URL), and --token (PLEX_TOKEN) for sessions")
		return
	}
	c := &Client{URL: opts.URL, Token: opts.Token, HTTP: opts.HTTP}
	srv, err := c.Identity(ctx)
	if err != nil {
		r.add(CheckServer, Fail, "%v", err)
		return
	}
	r.Server = srv
	r.add(CheckServer, OK, "Plex Media Server %s (machine %s) answers at %s", srv.Version, srv.MachineIdentifier, srv.URL)
	if opts.Token == "" {
		r.add(CheckSessions, Skip, "sessions not checked: pass --token (or set PLEX_TOKEN)")
		return
	}
	sessions, err := c.Sessions(ctx)
	if err != nil {
		r.add(CheckSessions, Fail, "%v", err)
		return
	}
	r.Sessions = sessions
	uses, transcodes := map[GPUUse]int{}, 0
	for _, s := range sessions {
		t := s.Transcode
		use := s.GPUUse()
		uses[use]++
		if t == nil || s.Type == "track" {
			continue
		}
		transcodes++
		status := OK
		msg := fmt.Sprintf("%s: %s on %s: %s", orDash(s.User), s.Title, orDash(s.Player), t.describe())
		if p := t.Problem(); p != "" {
			status, msg = Warn, msg+": "+p
		}
		if use == UseOtherGPU {
			msg += " (not an NVIDIA GPU: Intel Quick Sync or another vendor's; the arbiter does not count it)"
		}
		r.add(CheckTranscode, status, "%s", msg)
	}
	r.add(CheckSessions, OK, "%s", sessionSummary(len(sessions), transcodes, uses))
}

// sessionSummary counts the sessions by their use of the GPU.
func sessionSummary(total, transcodes int, uses map[GPUUse]int) string {
	s := fmt.Sprintf("%d session(s), %d transcode(s), %d of them on the NVIDIA GPU", total, transcodes, uses[UseNVIDIA])
	if n := uses[UseCPUFallback]; n > 0 {
		s += fmt.Sprintf(", %d fell back to the CPU", n)
	}
	if n := uses[UseOtherGPU]; n > 0 {
		s += fmt.Sprintf(", %d on another GPU (Intel Quick Sync?)", n)
	}
	return s
}
