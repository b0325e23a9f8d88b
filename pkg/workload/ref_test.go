package workload

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, ns string
		want   Ref
		err    string
	}{
		{in: "vllm-server", ns: "ai-dev", want: Ref{Kind: KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}},
		{in: "deploy/vllm-server", ns: "ai-dev", want: Ref{Kind: KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}},
		{in: "deployments.apps/vllm-server", ns: "ai-dev", want: Ref{Kind: KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}},
		{in: "sts/ollama", ns: "ai", want: Ref{Kind: KindStatefulSet, Namespace: "ai", Name: "ollama"}},
		{in: "StatefulSet/ollama", ns: "ai", want: Ref{Kind: KindStatefulSet, Namespace: "ai", Name: "ollama"}},
		{in: "cj/nightly-training", ns: "ai", want: Ref{Kind: KindCronJob, Namespace: "ai", Name: "nightly-training"}},
		{in: "cronjobs.batch/nightly-training", ns: "ai", want: Ref{Kind: KindCronJob, Namespace: "ai", Name: "nightly-training"}},
		{in: "CronJob/nightly-training", ns: "ai", want: Ref{Kind: KindCronJob, Namespace: "ai", Name: "nightly-training"}},
		{in: "ds/nvidia-device-plugin", ns: "kube-system", err: "Deployments, StatefulSets and CronJobs"},
		{in: "job/train-1", ns: "ai", err: "cj/NAME"},
		{in: "deploy/", ns: "ai", err: "want KIND/NAME"},
		{in: "deploy/a/b", ns: "ai", err: "want KIND/NAME"},
		{in: "vllm-server", ns: "", err: "pass -n"},
	} {
		got, err := ParseRef(tc.in, tc.ns)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRef(%q): %v, want error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
