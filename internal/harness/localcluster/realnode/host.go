package realnode

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// hostState is what a real node may add to the host outside its folder:
// iptables chains (kubelet, kube-proxy, CNI), network namespaces
// (containerd) and the kubelet's cgroups. Recorded before the node starts,
// so Stop removes only what is new.
type hostState struct {
	chains  map[string]bool // "iptables nat KUBE-SERVICES"
	netns   map[string]bool // /run/netns entries
	cgroups map[string]bool // /sys/fs/cgroup/<controller>/kubepods
}

var (
	iptablesTools  = []string{"iptables", "ip6tables"}
	iptablesTables = []string{"filter", "nat", "mangle"}
	// Chain prefixes the kubelet, kube-proxy and the CNI plugins create.
	nodeChainPrefixes = []string{"KUBE-", "CNI-"}
)

func readHostState() (hostState, error) {
	s := hostState{chains: map[string]bool{}, netns: map[string]bool{}, cgroups: map[string]bool{}}
	for _, tool := range iptablesTools {
		for _, table := range iptablesTables {
			out, err := exec.Command(tool+"-save", "-t", table).Output()
			if err != nil {
				return s, fmt.Errorf("%s-save -t %s: %w (apt-get install iptables)", tool, table, err)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if c, ok := strings.CutPrefix(line, ":"); ok {
					name, _, _ := strings.Cut(c, " ")
					if hasNodePrefix(name) {
						s.chains[tool+" "+table+" "+name] = true
					}
				}
			}
		}
	}
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			s.netns[filepath.Join("/run/netns", e.Name())] = true
		}
	}
	if ctrls, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, c := range ctrls {
			p := filepath.Join("/sys/fs/cgroup", c.Name(), "kubepods")
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				s.cgroups[p] = true
			}
		}
		if fi, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil && fi.IsDir() {
			s.cgroups["/sys/fs/cgroup/kubepods"] = true
		}
	}
	return s, nil
}

func hasNodePrefix(chain string) bool {
	for _, p := range nodeChainPrefixes {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// newSince lists what s has that before had not.
func (s hostState) newSince(before hostState) []string {
	var left []string
	for _, set := range []struct {
		what      string
		now, then map[string]bool
	}{{"iptables chain", s.chains, before.chains}, {"network namespace", s.netns, before.netns}, {"cgroup", s.cgroups, before.cgroups}} {
		for k := range set.now {
			if !set.then[k] {
				left = append(left, set.what+" "+k)
			}
		}
	}
	sort.Strings(left)
	return left
}

// removeNew removes what the host gained since before: iptables chains
// (first the rules that jump to them, then their rules, then the chains),
// network namespaces and cgroups (deepest first; a cgroup with a process
// left in it stays, and Leftovers names it).
func removeNew(before hostState) {
	now, err := readHostState()
	if err != nil {
		return
	}
	for _, tool := range iptablesTools {
		for _, table := range iptablesTables {
			var chains []string
			for k := range now.chains {
				if f := strings.Fields(k); f[0] == tool && f[1] == table && !before.chains[k] {
					chains = append(chains, f[2])
				}
			}
			if len(chains) > 0 {
				removeChains(tool, table, chains)
			}
		}
	}
	for p := range now.netns {
		if !before.netns[p] {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
			_ = os.Remove(p)
		}
	}
	for p := range now.cgroups {
		if !before.cgroups[p] {
			removeCgroup(p)
		}
	}
}

func removeChains(tool, table string, chains []string) {
	isNew := map[string]bool{}
	for _, c := range chains {
		isNew[c] = true
	}
	out, err := exec.Command(tool+"-save", "-t", table).Output()
	if err != nil {
		return
	}
	// Rules in chains that stay (the built-in ones, or others') that jump
	// to a chain being removed.
	for _, line := range strings.Split(string(out), "\n") {
		rule, ok := strings.CutPrefix(line, "-A ")
		if !ok {
			continue
		}
		f := strings.Fields(rule)
		if isNew[f[0]] {
			continue
		}
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "-j" || f[i] == "-g") && isNew[f[i+1]] {
				args := append([]string{"-w", "-t", table, "-D"}, splitRule(rule)...)
				_ = exec.Command(tool, args...).Run()
				break
			}
		}
	}
	for _, c := range chains {
		_ = exec.Command(tool, "-w", "-t", table, "-F", c).Run()
	}
	for _, c := range chains {
		_ = exec.Command(tool, "-w", "-t", table, "-X", c).Run()
	}
}

// splitRule splits an iptables-save rule into arguments, keeping quoted
// comments whole.
func splitRule(rule string) []string {
	var args []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range rule {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case r == ' ' && !quoted:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

func removeCgroup(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	_ = syscall.Rmdir(dir)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	if dir == "" {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	for _, mp := range mountsUnder(dir) {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}
