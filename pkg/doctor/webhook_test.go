package doctor

import (
	"crypto/x509"
	"net"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

// servedCert issues a serving certificate from ca, as the webhook presents it.
func servedCert(t *testing.T, ca *certs.CA, validFor time.Duration, names ...string) *x509.Certificate {
	t.Helper()
	o := certs.LeafOptions{CommonName: names[0], ValidFor: validFor}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			o.IPs = append(o.IPs, ip)
		} else {
			o.DNSNames = append(o.DNSNames, n)
		}
	}
	pair, err := ca.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	c, err := certs.ParseCertificate(pair.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t *testing.T, name string) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(name, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// urlWebhook is the local control plane's registration: by URL.
func urlWebhook(bundle []byte) *WebhookEvidence {
	return &WebhookEvidence{
		ConfigName: registration.DefaultName, Namespace: "gpu-system", Selector: "app.kubernetes.io/name=gpuslice",
		Config: registration.Build(registration.Options{URL: "https://127.0.0.1:8443/mutate", CABundle: bundle}),
	}
}

// serviceWebhook is the in-cluster registration: by Service.
func serviceWebhook(bundle []byte) *WebhookEvidence {
	return &WebhookEvidence{
		ConfigName: registration.DefaultName, Namespace: "gpu-system", Selector: "app.kubernetes.io/name=gpuslice",
		Config: registration.Build(registration.Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system", CABundle: bundle}),
		Service: &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "gpu-webhook", Namespace: "gpu-system"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}},
		},
	}
}

func TestDoctorJudgeRegistration(t *testing.T) {
	ignore := urlWebhook(nil)
	ignore.Config.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
	noPods := urlWebhook(nil)
	noPods.Config.Webhooks[0].Rules[0].Resources = []string{"services"}
	tests := []struct {
		name     string
		w        *WebhookEvidence
		verdict  Verdict
		contains []string
	}{
		{name: "seed's", w: urlWebhook(nil), verdict: OK, contains: []string{"calls https://127.0.0.1:8443/mutate, failurePolicy Fail", "annotated pods are refused"}},
		{name: "service", w: serviceWebhook(nil), verdict: OK, contains: []string{"calls service gpu-system/gpu-webhook:443/mutate"}},
		{name: "Ignore", w: ignore, verdict: Warn, contains: []string{"failurePolicy Ignore", "start without their devices", "set failurePolicy: Fail"}},
		{name: "not about pods", w: noPods, verdict: Fail, contains: []string{"do not cover pod CREATE"}},
		{name: "missing", w: &WebhookEvidence{ConfigName: "gpu-directory-injector", ConfigErr: `mutatingwebhookconfigurations.admissionregistration.k8s.io "gpu-directory-injector" not found`}, verdict: Fail,
			contains: []string{"not found: annotated pods get no devices", "gpuslice webhook --register", "--webhook-config"}},
		{name: "forbidden", w: &WebhookEvidence{ConfigName: "gpu-directory-injector", ConfigErr: `... is forbidden: User "jane" cannot get resource`}, verdict: Warn,
			contains: []string{"grant get on mutatingwebhookconfigurations"}},
		{name: "empty", w: &WebhookEvidence{ConfigName: "x", Config: &admissionregistrationv1.MutatingWebhookConfiguration{}}, verdict: Fail, contains: []string{"no webhooks"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeRegistration(tc.w), tc.verdict, tc.contains...) })
	}
}

func readyPod(name string, ready bool, waiting string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	if waiting != "" {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "webhook", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}}}
	}
	return p
}

func webhookDeployment(ready int32) appsv1.Deployment {
	return appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "gpu-webhook"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
		Status: appsv1.DeploymentStatus{ReadyReplicas: ready}}
}

func TestDoctorJudgeWebhookPods(t *testing.T) {
	with := func(w *WebhookEvidence, f func(*WebhookEvidence)) *WebhookEvidence { f(w); return w }
	tests := []struct {
		name     string
		w        *WebhookEvidence
		verdict  Verdict
		contains []string
	}{
		{name: "outside the cluster", w: urlWebhook(nil), verdict: OK, contains: []string{"served at https://127.0.0.1:8443/mutate, outside the cluster"}},
		{name: "in-cluster, nothing deployed", w: serviceWebhook(nil), verdict: Fail,
			contains: []string{"no webhook Deployment or pods in namespace gpu-system, selector app.kubernetes.io/name=gpuslice", "--webhook-namespace"}},
		{name: "ready", w: with(serviceWebhook(nil), func(w *WebhookEvidence) {
			w.Deployments = []appsv1.Deployment{webhookDeployment(2)}
			w.Pods = []corev1.Pod{readyPod("gpu-webhook-a", true, ""), readyPod("gpu-webhook-b", true, "")}
		}), verdict: OK, contains: []string{"Deployment gpu-webhook 2/2 ready, 2 of 2 pod(s) ready"}},
		{name: "crashing", w: with(serviceWebhook(nil), func(w *WebhookEvidence) {
			w.Deployments = []appsv1.Deployment{webhookDeployment(0)}
			w.Pods = []corev1.Pod{readyPod("gpu-webhook-a", false, "CrashLoopBackOff")}
		}), verdict: Fail, contains: []string{"Deployment gpu-webhook 0/2 ready", "pod gpu-webhook-a not ready (CrashLoopBackOff)", "no GPU pod can be created", "kubectl logs -n gpu-system -l app.kubernetes.io/name=gpuslice"}},
		{name: "one of two", w: with(serviceWebhook(nil), func(w *WebhookEvidence) {
			w.Deployments = []appsv1.Deployment{webhookDeployment(1)}
			w.Pods = []corev1.Pod{readyPod("gpu-webhook-a", true, ""), readyPod("gpu-webhook-b", false, "ImagePullBackOff")}
		}), verdict: Fail, contains: []string{"1/2 ready", "ImagePullBackOff"}},
		{name: "cannot list", w: with(serviceWebhook(nil), func(w *WebhookEvidence) { w.WorkloadErr = "forbidden" }), verdict: Warn, contains: []string{"grant list on deployments and pods in gpu-system"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeWebhookPods(tc.w), tc.verdict, tc.contains...) })
	}
}

func TestDoctorJudgeEndpoints(t *testing.T) {
	slice := func(ready ...bool) []discoveryv1.EndpointSlice {
		s := discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](8443)}}}
		for i, r := range ready {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.42.0." + string(rune('5'+i))}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)}})
		}
		return []discoveryv1.EndpointSlice{s}
	}
	with := func(f func(*WebhookEvidence)) *WebhookEvidence { w := serviceWebhook(nil); f(w); return w }
	tests := []struct {
		name     string
		w        *WebhookEvidence
		verdict  Verdict
		contains []string
	}{
		{name: "ready", w: with(func(w *WebhookEvidence) { w.EndpointSlices = slice(true, false) }), verdict: OK,
			contains: []string{"Service gpu-system/gpu-webhook has 1 ready endpoint(s): 10.42.0.5 (1 not ready)"}},
		{name: "none ready", w: with(func(w *WebhookEvidence) { w.EndpointSlices = slice(false) }), verdict: Fail,
			contains: []string{"no ready endpoint (1 not ready)", "nowhere to send GPU pods", "kubectl get endpointslices -n gpu-system -l kubernetes.io/service-name=gpu-webhook"}},
		{name: "no slices", w: with(func(w *WebhookEvidence) {}), verdict: Fail, contains: []string{"no ready endpoint (0 not ready)"}},
		{name: "no Service", w: with(func(w *WebhookEvidence) { w.Service, w.ServiceErr = nil, `services "gpu-webhook" not found` }), verdict: Fail,
			contains: []string{`services "gpu-webhook" not found`, "create the Service"}},
		{name: "wrong port", w: with(func(w *WebhookEvidence) { w.Service.Spec.Ports[0].Port = 8443 }), verdict: Fail, contains: []string{"has no port 443"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeEndpoints(tc.w), tc.verdict, tc.contains...) })
	}
}

func TestDoctorJudgeTLS(t *testing.T) {
	leaf := servedCert(t, newCA(t, "gpuslice webhook CA"), time.Hour, "gpu-webhook.gpu-system.svc")
	tests := []struct {
		name     string
		h        Handshake
		verdict  Verdict
		contains []string
	}{
		{name: "ok", h: Handshake{Address: "10.42.0.5:8443", Chain: []*x509.Certificate{leaf}}, verdict: OK,
			contains: []string{"TLS handshake with 10.42.0.5:8443: certificate for gpu-webhook.gpu-system.svc, issued by \"gpuslice webhook CA\""}},
		{name: "pod network unreachable from a laptop", h: Handshake{Address: "10.42.0.5:8443", Err: "dial tcp 10.42.0.5:8443: i/o timeout", Unreachable: true}, verdict: Warn,
			contains: []string{"could not reach 10.42.0.5:8443 from here", "if the dry run passes"}},
		{name: "not TLS", h: Handshake{Address: "127.0.0.1:8443", Err: "tls: first record does not look like a TLS handshake"}, verdict: Fail,
			contains: []string{"connected to 127.0.0.1:8443, but the TLS handshake failed", "HTTPS"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeTLS(&tc.h), tc.verdict, tc.contains...) })
	}
}

func TestDoctorJudgeCABundle(t *testing.T) {
	now := time.Now()
	ca, other := newCA(t, "gpuslice webhook CA"), newCA(t, "someone else's CA")
	svcName := "gpu-webhook.gpu-system.svc"
	good := servedCert(t, ca, time.Hour, svcName)
	tests := []struct {
		name     string
		bundle   []byte
		leaf     *x509.Certificate
		server   string
		verdict  Verdict
		contains []string
	}{
		{name: "verifies", bundle: ca.CertPEM, leaf: good, server: svcName, verdict: OK, contains: []string{`caBundle ("gpuslice webhook CA") verifies the webhook's certificate for gpu-webhook.gpu-system.svc`}},
		{name: "rotation: old and new CA", bundle: certs.AppendBundle(other.CertPEM, ca.CertPEM), leaf: good, server: svcName, verdict: OK, contains: []string{`"someone else's CA", "gpuslice webhook CA"`}},
		{name: "another CA", bundle: other.CertPEM, leaf: good, server: svcName, verdict: Fail,
			contains: []string{`issued by "gpuslice webhook CA", which is not a CA in the caBundle ("someone else's CA")`, "certificate signed by unknown authority", "put the issuing CA in caBundle"}},
		{name: "wrong name", bundle: ca.CertPEM, leaf: servedCert(t, ca, time.Hour, "webhook.example.org"), server: svcName, verdict: Fail,
			contains: []string{"is for webhook.example.org, not for gpu-webhook.gpu-system.svc", "subject alternative names"}},
		{name: "IP URL", bundle: ca.CertPEM, leaf: servedCert(t, ca, time.Hour, "127.0.0.1"), server: "127.0.0.1", verdict: OK},
		{name: "expired is left to the expiry check", bundle: ca.CertPEM, leaf: servedCert(t, ca, -time.Minute, svcName), server: svcName, verdict: OK},
		{name: "empty", bundle: nil, leaf: good, server: svcName, verdict: Warn, contains: []string{"caBundle is empty", "system roots"}},
		{name: "garbage", bundle: []byte("not a PEM"), leaf: good, server: svcName, verdict: Fail, contains: []string{"no PEM certificate in it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := serviceWebhook(tc.bundle)
			w.Handshake = &Handshake{Address: "10.42.0.5:8443", ServerName: tc.server, Chain: []*x509.Certificate{tc.leaf}}
			expect(t, JudgeCABundle(w, now), tc.verdict, tc.contains...)
		})
	}
}

func TestDoctorJudgeCertExpiry(t *testing.T) {
	leaf := servedCert(t, newCA(t, "gpuslice webhook CA"), 365*24*time.Hour, "gpu-webhook.gpu-system.svc")
	tests := []struct {
		name     string
		left     time.Duration // before NotAfter
		verdict  Verdict
		contains []string
	}{
		{name: "months left", left: 90 * 24 * time.Hour, verdict: OK, contains: []string{"valid for 90 days more"}},
		{name: "just over two weeks", left: 14*24*time.Hour + time.Minute, verdict: OK, contains: []string{"valid for 14 days more"}},
		{name: "under two weeks", left: 14*24*time.Hour - time.Minute, verdict: Warn, contains: []string{"expires in 13 days", "renew the serving certificate"}},
		{name: "an hour", left: time.Hour, verdict: Warn, contains: []string{"expires in 1h0m0s"}},
		{name: "expired", left: -2 * time.Hour, verdict: Fail, contains: []string{"expired 2h0m0s ago", "the API server refuses it"}},
		{name: "expires this instant", left: 0, verdict: Fail, contains: []string{"expired 0s ago"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeCertExpiry(leaf, leaf.NotAfter.Add(-tc.left)), tc.verdict, tc.contains...)
		})
	}
	// A 30-day self-signed leaf is renewed with 10 days left: no warning
	// then, one in its last quarter (7 days and a half) if renewal failed.
	short := servedCert(t, newCA(t, "gpuslice webhook CA"), 30*24*time.Hour, "gpu-webhook.gpu-system.svc")
	expect(t, JudgeCertExpiry(short, short.NotAfter.Add(-10*24*time.Hour)), OK)
	expect(t, JudgeCertExpiry(short, short.NotAfter.Add(-7*24*time.Hour)), Warn, "expires in 7 days")
}

func TestDoctorJudgeDryRun(t *testing.T) {
	profile := inject.DefaultConfig("").Profiles[0]
	mutated := pod("ai-dev", "gpuslice-doctor-probe-x", "", 0, annotated, withDevices, withRuntimeClass)
	untouched := pod("ai-dev", "gpuslice-doctor-probe-x", "", 0, annotated)
	tests := []struct {
		name     string
		d        DryRun
		verdict  Verdict
		contains []string
	}{
		{name: "injected", d: DryRun{Pod: mutated}, verdict: OK,
			contains: []string{"probe pod (gpu-directories: nvidia, dry run: nothing stored) in namespace ai-dev came back with /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm and runtimeClassName nvidia"}},
		{name: "webhook down", d: DryRun{Err: `Internal error occurred: failed calling webhook "gpu-directory-injector.gpuslice.io": failed to call webhook: Post "https://127.0.0.1:41967/mutate?timeout=5s": dial tcp 127.0.0.1:41967: connect: connection refused`}, verdict: Fail,
			contains: []string{"the API server could not call the webhook", "connection refused", "failurePolicy Fail refuses every annotated pod"}},
		{name: "caBundle mismatch", d: DryRun{Err: `Internal error occurred: failed calling webhook "gpu-directory-injector.gpuslice.io": failed to call webhook: Post "https://127.0.0.1:41967/mutate?timeout=5s": tls: failed to verify certificate: x509: certificate signed by unknown authority`}, verdict: Fail,
			contains: []string{"x509", "see webhook-ca-bundle"}},
		{name: "denied", d: DryRun{Err: `admission webhook "gpu-directory-injector.gpuslice.io" denied the request: namespace "ai-dev" is excluded`}, verdict: Fail, contains: []string{"the webhook's message says why"}},
		{name: "PodSecurity", d: DryRun{Err: `pods "gpuslice-doctor-probe-x" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volumes "nvidia0")`}, verdict: Fail,
			contains: []string{"pod-security.kubernetes.io/enforce=privileged"}},
		{name: "no RBAC", d: DryRun{Err: `pods is forbidden: User "jane" cannot create resource "pods" in API group "" in the namespace "ai-dev"`}, verdict: Warn, contains: []string{"grant create on pods in ai-dev"}},
		{name: "namespace missing", d: DryRun{Err: `namespaces "ai-dev" not found`}, verdict: Warn, contains: []string{"pass -n"}},
		{name: "not called", d: DryRun{Pod: untouched, Warnings: nil}, verdict: Fail, contains: []string{"admitted without its devices: the webhook was not called", "namespaceSelector"}},
		{name: "part of it", d: DryRun{Pod: pod("ai-dev", "p", "", 0, annotated, withRuntimeClass, func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "nvidia0", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/nvidia0"}}}}
		})}, verdict: Fail, contains: []string{"only part of its devices (missing /dev/nvidiactl, /dev/nvidia-uvm)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.d.Namespace, tc.d.Profile = "ai-dev", profile
			expect(t, JudgeDryRun(&tc.d), tc.verdict, tc.contains...)
		})
	}
}

// TestDoctorJudgeWebhook: which checks run depends on what was gathered.
func TestDoctorJudgeWebhook(t *testing.T) {
	ca := newCA(t, "gpuslice webhook CA")
	w := urlWebhook(ca.CertPEM)
	w.Handshake = &Handshake{Address: "127.0.0.1:8443", ServerName: "127.0.0.1", Chain: []*x509.Certificate{servedCert(t, ca, 30*24*time.Hour, "127.0.0.1")}}
	w.DryRun = DryRun{Namespace: "ai-dev", Profile: inject.DefaultConfig("").Profiles[0], Pod: pod("ai-dev", "p", "", 0, annotated, withDevices, withRuntimeClass)}
	var checks []string
	for _, r := range JudgeWebhook(w, time.Now()) {
		checks = append(checks, r.Check)
		if r.Verdict != OK {
			t.Errorf("%s: %s %s", r.Check, r.Verdict, r.Evidence)
		}
	}
	want := []string{CheckWebhookRegistration, CheckWebhookDeployment, CheckWebhookTLS, CheckWebhookCABundle, CheckWebhookCertExpiry, CheckWebhookDryRun}
	if len(checks) != len(want) {
		t.Fatalf("checks %v, want %v (no endpoints for a URL)", checks, want)
	}
	// Unreachable: no certificate to judge, so no caBundle or expiry rows.
	w.Used = true
	w.Handshake = &Handshake{Address: "127.0.0.1:8443", Err: "connection refused", Unreachable: true}
	if got := len(JudgeWebhook(w, time.Now())); got != 4 {
		t.Errorf("unreachable webhook: %d checks, want 4", got)
	}
}

// TestDoctorJudgeWebhookUnused: a cluster without the webhook whose GPU
// workloads only request shares depends on nothing: one warning. Once a
// workload is annotated, the missing registration fails.
func TestDoctorJudgeWebhookUnused(t *testing.T) {
	w := &WebhookEvidence{ConfigName: registration.DefaultName,
		ConfigErr: `mutatingwebhookconfigurations.admissionregistration.k8s.io "gpu-directory-injector" not found`,
		DryRun:    DryRun{Namespace: "ai", Profile: inject.DefaultConfig("").Profiles[0], Pod: pod("ai", "p", "", 0, annotated)}}
	got := JudgeWebhook(w, time.Now())
	if len(got) != 1 {
		t.Fatalf("unused webhook: %+v", got)
	}
	expect(t, got[0], Warn, "nothing depends on it yet")
	w.Used = true
	var fails int
	for _, r := range JudgeWebhook(w, time.Now()) {
		if r.Verdict == Fail {
			fails++
		}
	}
	if fails != 3 { // registration, in-cluster pods, dry run
		t.Errorf("used but missing: %d failures, want 3: %+v", fails, JudgeWebhook(w, time.Now()))
	}
}
