package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/doctor/gather"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

type doctorOptions struct {
	clusterCommand
	gather         gather.Options
	injectorConfig string
}

func (o *doctorOptions) complete(g *globals, args []string) error {
	scope := scopeList
	if len(args) == 1 {
		t, err := doctor.ParseTarget(args[0])
		if err != nil {
			return err
		}
		o.gather.Target, scope = &t, scopeObject
	}
	if err := o.completeIn(g, scope); err != nil {
		return err
	}
	o.gather.Namespace = o.namespace
	if o.injectorConfig != "" {
		var err error
		if o.gather.Injector, err = inject.LoadConfig(o.injectorConfig, o.gather.WebhookNamespace); err != nil {
			return err
		}
	}
	return nil
}

func (o *doctorOptions) run(ctx context.Context, out io.Writer) error {
	cs, err := o.kube.client()
	if err != nil {
		return err
	}
	ev, err := gather.Collect(ctx, cs, o.gather)
	if err != nil {
		return err
	}
	report := doctor.Judge(ev)
	if err := o.print.print(out, report, func(w io.Writer) error { return doctor.WriteTable(w, report) }); err != nil {
		return err
	}
	if report.Failed() {
		return fmt.Errorf("%d doctor check(s) failed", report.Summary.Fail)
	}
	return nil
}

func newDoctorCommand(g *globals) *cobra.Command {
	o := &doctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor [KIND/NAME]",
		Short: "Diagnose GPU workloads and the device-injection webhook: verdict, evidence and fix per check",
		Long: `Run the reference cluster's troubleshooting runbook as checks, each with a
verdict (ok, warn, fail), the evidence it saw and the remedy:

  gpu-shares     the request against the free nvidia.com/gpu.shared, and who holds the rest
  placement      nodeSelector and required node affinity against the GPU nodes
  scheduling     FailedScheduling events (Insufficient nvidia.com/gpu.shared, ...)
  pods           the controller has its pods (FailedCreate, e.g. the webhook refused)
  annotation     gpu-directories on the pod template (shares without it: warn, the seed recommends hybrid)
  runtime-class  runtimeClassName set and the RuntimeClass existing
  devices        the profile's device volumes and mounts in every container
  nvidia-env     NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES
  crash          CrashLoopBackOff, OOMKilled, restarts
  cuda-oom       "CUDA out of memory" in the last log lines, with the memory tuning advice
  vram-risk      the VRAM ledger's over-subscription risk of the node
  webhook-*      registration and failurePolicy, Deployment and pods, Service endpoints,
                 TLS handshake, caBundle against the served certificate, days to expiry,
                 and a dry-run admission of an annotated probe pod (nothing is stored)

KIND/NAME is deployment/NAME, statefulset/NAME, daemonset/NAME, cronjob/NAME
or pod/NAME (deploy, sts, ds, cj, po), in -n or the kubeconfig's namespace. Without it, every
GPU workload (in -n, or all namespaces) and the cluster-wide checks.

Exit status 1 when a check fails; warnings do not change it.`,
		Example: `  gpuslice doctor deploy/vllm-server -n ai-dev
  gpuslice doctor                      # every GPU workload, the webhook, every GPU node's VRAM
  gpuslice doctor -n media -o json`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeWorkloads(g, ops.CompleteOptions{}),
		RunE:              runCommand(g, o),
	}
	f := cmd.Flags()
	f.StringVar(&o.gather.WebhookConfig, "webhook-config", registration.DefaultName, "MutatingWebhookConfiguration of the device-injection webhook")
	f.StringVar(&o.gather.WebhookNamespace, "webhook-namespace", registration.DefaultNamespace, "namespace of the webhook's Deployment when its registration names a URL rather than a Service")
	f.StringVar(&o.gather.WebhookSelector, "webhook-selector", "", "label selector of the webhook's pods (default: its Service's selector, else "+gather.DefaultWebhookSelector+" or "+gather.LegacyWebhookSelector+")")
	f.StringVar(&o.gather.ProbeNamespace, "probe-namespace", "", "namespace of the dry-run probe pod (default: the target's, -n, or the first annotated workload's)")
	f.StringVar(&o.injectorConfig, "injector-config", "", "the webhook's --config file, for device profiles beyond the built-in nvidia")
	f.IntVar(&o.gather.TailLines, "tail", gather.DefaultTailLines, "log lines read per container for CUDA out of memory")
	o.print = addPrintFlags(cmd, false)
	return cmd
}
