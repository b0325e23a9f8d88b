// Package signals reads what `gpuslice arbiter` decides on: how much GPU
// memory is left, and whether a protected workload (Plex) is using the GPU.
//
// Every source is optional; the arbiter uses those it is given and says in
// its logs, by Name, which one answered what. Memory comes from one of:
//
//   - DCGMExporter scrapes NVIDIA dcgm-exporter's /metrics on each node
//     directly: no Prometheus needed, and the freshest figure (dcgm-exporter
//     samples every 30 s by default). Its Hostname label names the node
//     only when the exporter's NODE_NAME is set (the Helm chart does);
//     otherwise give each target as NODE=URL.
//   - Prometheus reads the same DCGM fields from a Prometheus server that
//     already scrapes dcgm-exporter, for clusters where the exporters are
//     not reachable, at the cost of one scrape interval of delay.
//   - Agents reads gpuslice's own node agents through the API server's
//     pods proxy, exactly as `gpuslice top` does: no extra exporter, and
//     it needs only `get pods/proxy` RBAC.
//
// Activity comes from Plex, which lists its sessions and counts the
// transcodes that run on the GPU (NVDEC or NVENC).
//
// A MemorySource with several targets returns what the targets that
// answered gave together with an error naming those that did not, so the
// caller can act on the GPUs it knows about and report the rest. Results
// are sorted by node, then GPU index as nvidia-smi numbers GPUs, and hold
// each GPU once.
package signals
