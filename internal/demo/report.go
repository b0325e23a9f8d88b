package demo

import (
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"

	"github.com/gpuslice/gpuslice/internal/table"
)

// WritePodReport prints what a pod received from the webhook: its runtime
// class, node, host-path device volumes and where each is mounted, and the
// warnings the webhook returned.
func WritePodReport(w io.Writer, pod *corev1.Pod, warnings []string) error {
	rc := "<none>"
	if pod.Spec.RuntimeClassName != nil {
		rc = *pod.Spec.RuntimeClassName
	}
	fmt.Fprintf(w, "Pod %s/%s (annotation gpu-directories: %s) as stored by the API server:\n",
		pod.Namespace, pod.Name, pod.Annotations[workload.AnnotationProfiles])
	fmt.Fprintf(w, "  node:              %s (phase %s)\n", orNone(pod.Spec.NodeName), pod.Status.Phase)
	fmt.Fprintf(w, "  runtimeClassName:  %s\n\n", rc)

	tw := table.NewWriter(w)
	fmt.Fprintln(tw, "VOLUME\tHOST PATH\tCONTAINER\tMOUNT PATH")
	for _, v := range pod.Spec.Volumes {
		if v.HostPath == nil {
			continue
		}
		mounted := false
		for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, v.HostPath.Path, c.Name, m.MountPath)
					mounted = true
				}
			}
		}
		if !mounted {
			fmt.Fprintf(tw, "%s\t%s\t<none>\t<none>\n", v.Name, v.HostPath.Path)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings from the webhook:\n  %s\n", strings.Join(warnings, "\n  "))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
