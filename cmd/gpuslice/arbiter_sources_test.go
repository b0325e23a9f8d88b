package main

import (
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestSourceFlags(t *testing.T) {
	tests := []struct {
		name    string
		opts    sourceFlags
		memory  int
		plex    *workload.Ref
		wantErr string
	}{
		{name: "none"},
		{name: "dcgm and prometheus", opts: sourceFlags{DCGMExporters: []string{"homelabai=http://10.0.0.5:9400/metrics"}, PrometheusURL: "http://prom:9090"}, memory: 2},
		{name: "plex", opts: sourceFlags{PlexURL: "http://plex:32400", PlexWorkload: "media/plex"}, plex: &workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}},
		{name: "plex statefulset", opts: sourceFlags{PlexURL: "http://plex:32400", PlexWorkload: "media/sts/plex"}, plex: &workload.Ref{Kind: workload.KindStatefulSet, Namespace: "media", Name: "plex"}},
		{name: "bad dcgm target", opts: sourceFlags{DCGMExporters: []string{"10.0.0.5:9400"}}, wantErr: "--dcgm-exporter"},
		{name: "bad prometheus", opts: sourceFlags{PrometheusURL: "prom:9090"}, wantErr: "--prometheus-url"},
		{name: "bad plex workload", opts: sourceFlags{PlexURL: "http://plex:32400", PlexWorkload: "plex"}, wantErr: "NAMESPACE/NAME"},
		{name: "missing token file", opts: sourceFlags{PlexURL: "http://plex:32400", PlexWorkload: "media/plex", PlexTokenFile: "/nonexistent/token"}, wantErr: "--plex-token-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.opts.build(nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Memory) != tt.memory {
				t.Errorf("%d memory sources, want %d", len(s.Memory), tt.memory)
			}
			if tt.plex != nil {
				if _, ok := s.Activity[*tt.plex]; !ok || len(s.Activity) != 1 {
					t.Errorf("activity sources %v, want one for %v", s.Activity, *tt.plex)
				}
			}
		})
	}
}
