package dcgmtest

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// field is one DCGM field as dcgm-exporter's default-counters.csv
// declares it, with a plausible value for a GPU.
type field struct {
	name, typ, help string
	value           func(g GPU) string
}

func integer(f func(g GPU) int64) func(GPU) string {
	return func(g GPU) string { return strconv.FormatInt(f(g), 10) }
}

// busy is the share of the GPU's memory in use, in percent: the other
// fields follow it so that they change with Set, like a real GPU's.
func busy(g GPU) int64 {
	if g.TotalMiB <= 0 {
		return 0
	}
	return min(100, 100*g.UsedMiB/g.TotalMiB)
}

// fields are in the order dcgm-exporter writes them, the framebuffer
// ones among others with similar names.
var fields = []field{
	{"DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", integer(func(g GPU) int64 { return 210 + 15*busy(g) })},
	{"DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", integer(func(g GPU) int64 { return 405 + 90*busy(g) })},
	{"DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", integer(func(g GPU) int64 { return 34 + busy(g)/3 })},
	{"DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", func(g GPU) string { return fmt.Sprintf("%f", 21.5+3.2*float64(busy(g))) }},
	{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).", integer(func(GPU) int64 { return 5551899580 })},
	{"DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", integer(func(GPU) int64 { return 0 })},
	{"DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", integer(busy)},
	{"DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", integer(func(g GPU) int64 { return busy(g) / 2 })},
	{"DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", integer(func(GPU) int64 { return 0 })},
	{"DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", integer(func(GPU) int64 { return 0 })},
	{"DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", integer(func(GPU) int64 { return 0 })},
	{"DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", integer(GPU.FreeMiB)},
	{"DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", integer(func(g GPU) int64 { return g.UsedMiB })},
	{"DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).", integer(func(g GPU) int64 { return g.ReservedMiB })},
}

func fieldNamed(name string) (field, bool) {
	i := slices.IndexFunc(fields, func(f field) bool { return f.name == name })
	if i < 0 {
		return field{}, false
	}
	return fields[i], true
}

// label is one name="value" pair; order matters in the text format.
type label struct{ name, value string }

// series are the label sets g is reported with: one, or one per pod.
func series(g GPU) [][]label {
	bus := g.PCIBusID
	if bus == "" {
		bus = fmt.Sprintf("00000000:%02X:00.0", g.Index+1)
	}
	base := []label{
		{"gpu", strconv.Itoa(g.Index)}, {"UUID", g.UUID}, {"pci_bus_id", bus},
		{"device", "nvidia" + strconv.Itoa(g.Index)}, {"modelName", g.Model},
	}
	if host := cmp.Or(g.Hostname, g.Node); host != "" {
		base = append(base, label{"Hostname", host})
	}
	base = append(base, label{"DCGM_FI_DRIVER_VERSION", DriverVersion})
	if len(g.Pods) == 0 {
		return [][]label{base}
	}
	out := make([][]label, 0, len(g.Pods))
	for _, p := range g.Pods {
		out = append(out, append(slices.Clone(base), label{"container", p.Container}, label{"namespace", p.Namespace}, label{"pod", p.Name}))
	}
	return out
}

var escape = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// Exposition is the /metrics text for gpus, leaving out the fields in
// omit; the server answers with it.
func Exposition(gpus []GPU, omit ...string) string {
	var b strings.Builder
	for _, f := range fields {
		if slices.Contains(omit, f.name) {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		for _, g := range gpus {
			for _, labels := range series(g) {
				pairs := make([]string, len(labels))
				for i, l := range labels {
					pairs[i] = l.name + `="` + escape.Replace(l.value) + `"`
				}
				fmt.Fprintf(&b, "%s{%s} %s\n", f.name, strings.Join(pairs, ","), f.value(g))
			}
		}
	}
	return b.String()
}

func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	s.scrapes.Add(1)
	st := s.state()
	if st.status != 0 {
		http.Error(w, "dcgmtest: failing as asked", st.status)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprint(w, Exposition(st.gpus, st.omit...))
}
