package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// sourceFlags say where the arbiter's signals are.
type sourceFlags struct {
	// DCGMExporters are "URL" or "NODE=URL" of dcgm-exporter /metrics.
	DCGMExporters []string
	// PrometheusURL is a Prometheus server that scrapes dcgm-exporter.
	PrometheusURL string
	// NodeLabel names the node in DCGM series ("" = Hostname).
	NodeLabel string
	// PrometheusSelector picks dcgm-exporter's series in Prometheus ("" =
	// signals.DefaultPrometheusSelector).
	PrometheusSelector string
	// Agents reads gpuslice's own node agents through the API server:
	// the pods matching AgentSelector in AgentNamespace ("" = all), on
	// AgentPort (0 = the agent's default).
	Agents                        bool
	AgentNamespace, AgentSelector string
	AgentPort                     int
	// PlexURL and PlexTokenFile (or PlexToken) reach Plex; PlexWorkload
	// is the protected workload its transcodes are attributed to:
	// "NAMESPACE/NAME" (a Deployment) or "NAMESPACE/KIND/NAME".
	PlexURL, PlexToken, PlexTokenFile, PlexWorkload string
	Timeout                                         time.Duration
}

// build makes the sources, refusing bad flags before anything runs.
func (o sourceFlags) build(cs kubernetes.Interface) (arbiter.Sources, error) {
	var s arbiter.Sources
	client := &http.Client{Timeout: o.Timeout}
	if len(o.DCGMExporters) > 0 {
		d := &signals.DCGMExporter{HTTP: client, NodeLabel: o.NodeLabel}
		for _, spec := range o.DCGMExporters {
			t, err := signals.ParseTarget(spec)
			if err != nil {
				return s, fmt.Errorf("--dcgm-exporter: %w", err)
			}
			d.Targets = append(d.Targets, t)
		}
		s.Memory = append(s.Memory, d)
	}
	if o.PrometheusURL != "" {
		if !strings.HasPrefix(o.PrometheusURL, "http://") && !strings.HasPrefix(o.PrometheusURL, "https://") {
			return s, fmt.Errorf("--prometheus-url %q: want http://HOST:PORT of the Prometheus server", o.PrometheusURL)
		}
		s.Memory = append(s.Memory, &signals.Prometheus{URL: o.PrometheusURL, HTTP: client, NodeLabel: o.NodeLabel, Selector: o.PrometheusSelector})
	}
	if o.Agents {
		s.Memory = append(s.Memory, &signals.Agents{Client: cs, Namespace: o.AgentNamespace, Selector: o.AgentSelector, Port: o.AgentPort})
	}
	if o.PlexURL != "" {
		token := o.PlexToken
		if o.PlexTokenFile != "" {
			b, err := os.ReadFile(o.PlexTokenFile)
			if err != nil {
				return s, fmt.Errorf("--plex-token-file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		ref, err := parseWorkloadRef(o.PlexWorkload)
		if err != nil {
			return s, fmt.Errorf("--plex-workload: %w", err)
		}
		s.Activity = map[workload.Ref]signals.ActivitySource{
			ref: &signals.Plex{Client: &plexhealth.Client{URL: strings.TrimRight(o.PlexURL, "/"), Token: token, HTTP: client}},
		}
	}
	return s, nil
}

// parseWorkloadRef reads "NAMESPACE/NAME" or "NAMESPACE/KIND/NAME".
func parseWorkloadRef(s string) (workload.Ref, error) {
	ns, rest, ok := strings.Cut(s, "/")
	if !ok || ns == "" {
		return workload.Ref{}, fmt.Errorf("%q: want NAMESPACE/NAME or NAMESPACE/KIND/NAME, e.g. media/plex", s)
	}
	return workload.ParseRef(rest, ns)
}
