package e2e

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
)

// cleanLogs stands in for the kubelet, which the local control plane lacks.
type cleanLogs struct{}

func (cleanLogs) Logs(context.Context, string, string, string, int64) (string, error) {
	return "Starting Plex Media Server.\nPlex Media Server is running.\n", nil
}

// TestPlexHealth: the seed's Plex Deployment, given its devices by the
// webhook and marked Running and Ready, against a stand-in Plex server.
func TestPlexHealth(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, seed.SeedWorkloads()...); err != nil {
		t.Fatal(err)
	}
	plex := plextest.Start("plex-token", plextest.HardwareTranscode("Dune", "jane"), plextest.DirectPlay("Heat", "alex"))
	defer plex.Close()
	opts := plexhealth.Options{Logs: cleanLogs{}, URL: plex.URL, Token: "plex-token"}

	check := func(name string, opts plexhealth.Options, healthy bool, warnings int, want ...string) {
		t.Helper()
		r, err := plexhealth.Check(ctx, cs, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var b strings.Builder
		if err := plexhealth.WriteTable(&b, r); err != nil {
			t.Fatal(err)
		}
		if r.Healthy != healthy || r.Warnings != warnings {
			t.Errorf("%s: healthy %v with %d warning(s), want %v with %d:\n%s", name, r.Healthy, r.Warnings, healthy, warnings, b.String())
		}
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: report lacks %q:\n%s", name, w, b.String())
			}
		}
	}

	check("healthy, hardware transcode", opts, true, 0,
		"devices        ok       media/plex-", ": plex: /dev/nvidia-uvm, /dev/nvidia0, /dev/nvidiactl",
		"runtimeClassName nvidia",
		"transcode      ok       jane: Dune on Living Room TV: hardware nvdec → nvenc, speed 3.2",
		"sessions       ok       2 session(s), 1 transcode(s), 1 of them on the NVIDIA GPU",
		"Plex is healthy: 0 failure(s), 0 warning(s)")

	// The real log reader: without a kubelet the API server cannot fetch
	// logs, which is a warning that says so, not a pass.
	kubeLogs := opts
	kubeLogs.Logs = plexhealth.KubeLogs{Client: cs}
	check("logs unreadable", kubeLogs, true, 1, "logs           warn     could not read the log of media/plex-")

	plex.Lock()
	plex.Sessions = append(plex.Sessions, plextest.SoftwareFallback("Alien", "sam"))
	plex.Unlock()
	check("software fallback", opts, true, 1,
		"transcode      warn     sam: Alien on iPad: software transcode, speed 0.8: video encoded in software although hardware was requested: it fell back to the CPU",
		"1 of them on the NVIDIA GPU, 1 fell back to the CPU")

	plex.SetSessions(plextest.HardwareTranscode("Dune", "jane"), plextest.SlowHardware("Heat", "alex"), plextest.QuickSync("Up", "kim"), plextest.MusicTranscode("One More Time", "lee"))
	check("slow hardware beside Quick Sync and music", opts, true, 1,
		"transcode      warn     alex: Heat on Living Room TV: hardware nvdec → nvenc, speed 0.7: transcoding slower than real time",
		"transcode      ok       kim: Up on Roku: hardware vaapi → vaapi, speed 2.4 (not an NVIDIA GPU",
		"4 session(s), 3 transcode(s), 2 of them on the NVIDIA GPU, 1 on another GPU")

	wrongToken := opts
	wrongToken.Token = "expired"
	check("wrong token", wrongToken, false, 0, "sessions       fail", "token rejected by Plex (401 Unauthorized): check --token or PLEX_TOKEN")

	down := plextest.Start("")
	down.Close()
	serverDown := opts
	serverDown.URL = down.URL
	check("server down", serverDown, false, 0, "server         fail     no answer from Plex at "+down.URL)

	// The command line: exit 0 when healthy, non-zero once the pod is not
	// Ready.
	args := []string{"plex-health", "--url", plex.URL, "--plex-token", "plex-token"}
	if out, err := gpuslice(t, env, args...); err != nil || !strings.Contains(out, "Plex is healthy") {
		t.Errorf("gpuslice plex-health, healthy: %v\n%s", err, out)
	}
	pods, err := cs.CoreV1().Pods("media").List(ctx, metav1.ListOptions{LabelSelector: "app=plex"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("Plex pods: %v %v", pods, err)
	}
	if _, err := env.Cluster.SetPodRunning(ctx, "media", pods.Items[0].Name, false); err != nil {
		t.Fatal(err)
	}
	check("pod not ready", opts, false, 1, "pod            fail     media/plex-", "not Ready")
	out, err := gpuslice(t, env, args...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "error: plex-health: 1 failure(s), Plex is not healthy") {
		t.Errorf("gpuslice plex-health, pod not ready: %v\n%s", err, out)
	}
}
