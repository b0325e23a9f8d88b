package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/internal/output"
	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/doctor/gather"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
)

func newConfigCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate and render the NVIDIA device plugin's sharing configuration",
		Long: `Validate and render the configuration file of the NVIDIA device plugin
(the ConfigMap kube-system/nvidia-device-plugin-config in the reference
cluster): time-slicing or MPS replicas, renaming to nvidia.com/gpu.shared,
and the plugin's flags.`,
	}
	cmd.AddCommand(newConfigValidateCommand(g), newConfigRenderCommand())
	return cmd
}

func newConfigValidateCommand(g *globals) *cobra.Command {
	var (
		fromCluster                bool
		cmNamespace, cmName, cmKey string
		outFlags                   *printFlags
	)
	cmd := &cobra.Command{
		Use:   "validate FILE|-",
		Short: "Check a device-plugin config and report every problem with its field, line and fix",
		Example: `  gpuslice config validate config.yaml
  kubectl get cm -n kube-system nvidia-device-plugin-config -o jsonpath='{.data.default}' | gpuslice config validate -
  gpuslice config validate --from-cluster`,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case fromCluster && len(args) > 0:
				return fmt.Errorf("give either a FILE or --from-cluster, not both")
			case !fromCluster && len(args) != 1:
				return fmt.Errorf("give one FILE (or - for standard input), or --from-cluster")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outFlags.Validate(); err != nil {
				return err
			}
			var (
				source string
				cfg    *pluginconfig.Config
				err    error
				multi  []pluginconfig.MultiShare
				drift  []doctor.Result
			)
			if fromCluster {
				source = "ConfigMap " + cmNamespace + "/" + cmName
				cs, cerr := g.kube.client()
				if cerr != nil {
					return cerr
				}
				cm, gerr := cs.CoreV1().ConfigMaps(cmNamespace).Get(cmd.Context(), cmName, metav1.GetOptions{})
				if gerr != nil {
					return fmt.Errorf("reading %s: %w; name it with --configmap-namespace and --configmap-name", source, gerr)
				}
				cfg, err = pluginconfig.FromConfigMap(cm, cmKey)
				report, lerr := snapshot.Ledger(cmd.Context(), cs, ledger.Options{})
				if lerr != nil {
					return fmt.Errorf("reading who requests shares: %w", lerr)
				}
				multi = pluginconfig.MultiShares(report)
				var derr error
				if drift, derr = gather.DevicePluginDrift(cmd.Context(), cs); derr != nil {
					return fmt.Errorf("comparing the running device plugin with %s: %w", source, derr)
				}
			} else {
				source = args[0]
				data, rerr := readFileOrStdin(args[0], cmd.InOrStdin())
				if rerr != nil {
					return rerr
				}
				cfg, err = pluginconfig.Parse(data)
			}
			result, verr := pluginconfig.NewValidation(source, cfg, err)
			if verr != nil {
				return verr // not a config problem: I/O, or a ConfigMap without the key
			}
			result.NoteMultiShare(multi)
			for _, d := range drift {
				result.Drift = append(result.Drift, d.Object+": "+d.Evidence+"; fix: "+d.Remedy)
			}
			if werr := outFlags.print(cmd.OutOrStdout(), result, result.WriteTable); werr != nil {
				return werr
			}
			if !result.Valid {
				return fmt.Errorf("%s: %d problem(s)", source, len(result.Problems))
			}
			if len(result.Drift) > 0 {
				return fmt.Errorf("%s: valid, but the device plugin does not run it: %d difference(s)", source, len(result.Drift))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&fromCluster, "from-cluster", false, "read the config from the cluster's ConfigMap instead of a file")
	f.StringVar(&cmNamespace, "configmap-namespace", pluginconfig.DefaultNamespace, "namespace of the plugin's ConfigMap (with --from-cluster)")
	f.StringVar(&cmName, "configmap-name", pluginconfig.DefaultConfigMapName, "name of the plugin's ConfigMap (with --from-cluster)")
	f.StringVar(&cmKey, "key", "", "key of the ConfigMap to read; empty when it has only one")
	outFlags = addPrintFlags(cmd, false)
	return cmd
}

func newConfigRenderCommand() *cobra.Command {
	var (
		o          pluginconfig.RenderOptions
		configOnly bool
		outFlags   *printFlags
	)
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Write the device plugin's ConfigMap for a sharing setup",
		Example: `  # the reference cluster: one GPU as 8 shares of nvidia.com/gpu.shared
  gpuslice config render --replicas 8 --rename | kubectl apply -f -

  # only the config file, for the plugin's Helm chart (config.map)
  gpuslice config render --replicas 4 --config-only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outFlags.Validate(); err != nil {
				return err
			}
			if configOnly {
				cfg, err := pluginconfig.Render(o)
				if err != nil {
					return err
				}
				if outFlags.format == output.JSON {
					return outFlags.print(cmd.OutOrStdout(), cfg, nil)
				}
				// The plugin's own YAML spelling, not sigs.k8s.io/yaml's.
				b, err := pluginconfig.Marshal(cfg)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			cm, err := pluginconfig.RenderConfigMap(o)
			if err != nil {
				return err
			}
			return outFlags.print(cmd.OutOrStdout(), cm, nil)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Replicas, "replicas", 8, "shares per GPU")
	f.BoolVar(&o.Rename, "rename", false, "advertise the shares as <resource>.shared (renameByDefault), as the reference cluster does")
	f.BoolVar(&o.FailRequestsGreaterThanOne, "fail-requests-greater-than-one", false, "refuse pods asking for more than one share")
	f.StringVar(&o.ResourceName, "resource-name", "", "resource to share (default nvidia.com/gpu)")
	f.StringVar(&o.Devices, "devices", "", "GPUs to share: all (default)")
	f.BoolVar(&o.MPS, "mps", false, "share with MPS instead of time-slicing")
	f.StringVar(&o.ConfigMapName, "configmap-name", pluginconfig.DefaultConfigMapName, "name of the ConfigMap")
	f.StringVar(&o.Namespace, "configmap-namespace", pluginconfig.DefaultNamespace, "namespace of the ConfigMap")
	f.StringVar(&o.Key, "key", pluginconfig.DefaultConfigMapKey, "key of the config in the ConfigMap")
	f.BoolVar(&configOnly, "config-only", false, "write only the config file, not the ConfigMap around it")
	outFlags = addDataFlags(cmd)
	return cmd
}

func readFileOrStdin(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return b, nil
}
