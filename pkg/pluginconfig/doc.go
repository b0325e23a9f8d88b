// Package pluginconfig models, validates and renders the configuration file of
// the NVIDIA k8s-device-plugin (github.com/NVIDIA/k8s-device-plugin,
// api/config/v1): the YAML document kept in the ConfigMap
// kube-system/nvidia-device-plugin-config that tells the plugin how to share
// GPUs (time-slicing or MPS).
//
// It is pure logic: no Kubernetes client calls.
//
// # Why stricter than the plugin
//
// The plugin decodes the file leniently: unknown or misspelt fields are
// dropped without a word, and several fields it parses are then discarded at
// start-up (the top-level resources section, per-resource rename and devices;
// see DisableResourceNamingInConfig upstream). A config that loads is
// therefore not a config that does what it says. Parse and Validate report
// both kinds of problem, each with its field path, the YAML line when known,
// and a concrete fix, so that what the ledger reads (SharedResources) is what
// the plugin will actually advertise.
//
// # Rules taken from the plugin
//
//   - version must be "v1" (an empty version is read as "v1").
//   - sharing.timeSlicing and sharing.mps are mutually exclusive; the plugin
//     silently prefers mps when both are set.
//   - every shared resource needs a name and replicas >= 2 (the plugin refuses
//     replicas below 2 and fails to start).
//   - resource names are nvidia.com/gpu, or nvidia.com/mig-<profile> with
//     migStrategy mixed; MPS shares only nvidia.com/gpu (no MIG devices).
//   - renameByDefault advertises <name>.shared; an explicit rename is
//     overridden (renameByDefault) or dropped (no renameByDefault).
//   - devices other than "all" are parsed (malformed entries stop the plugin)
//     and then ignored: every GPU is shared.
//   - MPS defaults failRequestsGreaterThanOne to true; plugin releases that
//     predate upstream PR #1762 (May 2026) force it to true whatever the file
//     says.
//
// # ConfigMap key
//
// RenderConfigMap stores the file under the key "default" unless told
// otherwise. The Helm chart mounts the whole ConfigMap and its config-manager
// copies one key to /config/config.yaml: the key named by the node label
// nvidia.com/device-plugin.config, else the chart's config.default, else the
// fallback strategies "named" (a key called "default") and "single" (the only
// key). "default" is picked by both fallbacks, so it keeps working when other
// keys are added later. When updating an existing ConfigMap, keep its key
// (FromConfigMap with key "" finds it when there is only one).
package pluginconfig
