package doctor

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/podstatus"
)

// ExpiryWarning is how close to its end a long-lived serving certificate
// gets a warning. Short-lived ones warn in their last quarter instead:
// gpuslice's own 30-day leaves are renewed with 10 days left, and must not
// warn while healthy.
const ExpiryWarning = 14 * 24 * time.Hour

// warnWithin is the warning window for one certificate.
func warnWithin(leaf *x509.Certificate) time.Duration {
	return min(ExpiryWarning, leaf.NotAfter.Sub(leaf.NotBefore)/4)
}

// JudgeWebhook runs the seed's "Check if webhook is running" and "Webhook
// Failure Policy" as checks: registration, Deployment and pods, Service
// endpoints, TLS, caBundle, certificate expiry, and a dry-run admission.
func JudgeWebhook(w *WebhookEvidence, now time.Time) []Result {
	if w.Config == nil && !w.Used && strings.Contains(w.ConfigErr, "not found") {
		// Shares only (the seed's Method 2): nothing depends on a webhook.
		return []Result{{Check: CheckWebhookRegistration, Verdict: Warn, Object: mwcObject(w.ConfigName),
			Evidence: orNone(w.ConfigErr) + "; no GPU workload checked uses gpu-directories or gpu-shares, so nothing depends on it yet",
			Remedy:   "register the webhook before annotating pods (gpuslice webhook --register); pass --webhook-config if it has another name"}}
	}
	out := []Result{JudgeRegistration(w), JudgeWebhookPods(w)}
	if w.ServiceRef() != nil {
		out = append(out, JudgeEndpoints(w))
	}
	if h := w.Handshake; h != nil {
		out = append(out, JudgeTLS(h))
		if len(h.Chain) > 0 {
			out = append(out, JudgeCABundle(w, now), JudgeCertExpiry(h.Chain[0], now))
		}
	}
	return append(out, JudgeDryRun(&w.DryRun))
}

func mwcObject(name string) string { return "mutatingwebhookconfiguration/" + name }

// JudgeRegistration checks that the MutatingWebhookConfiguration exists,
// intercepts pod creation, and has the seed's failurePolicy Fail.
func JudgeRegistration(w *WebhookEvidence) Result {
	res := Result{Check: CheckWebhookRegistration, Object: mwcObject(w.ConfigName)}
	hook := w.hook()
	switch {
	case w.Config == nil && strings.Contains(w.ConfigErr, "forbidden"):
		res.Verdict = Warn
		res.Evidence = "could not read it: " + w.ConfigErr
		res.Remedy = "grant get on mutatingwebhookconfigurations to check the webhook"
		return res
	case w.Config == nil:
		res.Verdict = Fail
		res.Evidence = orNone(w.ConfigErr) + ": annotated pods get no devices"
		res.Remedy = "register the webhook (gpuslice webhook --register, or apply its manifest); if it has another name, pass --webhook-config"
		return res
	case hook == nil:
		res.Verdict = Fail
		res.Evidence = "it has no webhooks"
		res.Remedy = "re-apply it: gpuslice webhook --register"
		return res
	}
	policy := admissionregistrationv1.Fail // the v1 default
	if hook.FailurePolicy != nil {
		policy = *hook.FailurePolicy
	}
	target := w.URL()
	if ref := hook.ClientConfig.Service; ref != nil {
		target = fmt.Sprintf("service %s/%s:%d%s", ref.Namespace, ref.Name, servicePort(ref), orEmpty(ref.Path))
	}
	res.Evidence = fmt.Sprintf("webhook %s calls %s, failurePolicy %s", hook.Name, target, policy)
	switch {
	case !interceptsPodCreate(hook.Rules):
		res.Verdict = Fail
		res.Evidence += "; its rules do not cover pod CREATE"
		res.Remedy = "re-apply it: gpuslice webhook --register"
	case policy == admissionregistrationv1.Ignore:
		res.Verdict = Warn
		res.Evidence += ": while the webhook is down GPU pods start without their devices"
		res.Remedy = "set failurePolicy: Fail (the seed's choice) so GPU pods wait for their devices instead"
	default:
		res.Verdict = OK
		res.Evidence += ": with the webhook down, annotated pods are refused (seed)"
	}
	return res
}

func interceptsPodCreate(rules []admissionregistrationv1.RuleWithOperations) bool {
	for _, r := range rules {
		ops := slices.Contains(r.Operations, admissionregistrationv1.Create) || slices.Contains(r.Operations, admissionregistrationv1.OperationAll)
		res := slices.Contains(r.Resources, "pods") || slices.Contains(r.Resources, "*")
		group := slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")
		if ops && res && group {
			return true
		}
	}
	return false
}

func servicePort(ref *admissionregistrationv1.ServiceReference) int32 {
	if ref.Port != nil {
		return *ref.Port
	}
	return 443
}

func orEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// JudgeWebhookPods checks that the webhook's Deployment is available and
// its pods ready. A webhook reached by URL may run outside the cluster.
func JudgeWebhookPods(w *WebhookEvidence) Result {
	res := Result{Check: CheckWebhookDeployment}
	where := fmt.Sprintf("namespace %s, selector %s", w.Namespace, w.Selector)
	if w.WorkloadErr != "" {
		res.Verdict, res.Evidence = Warn, "could not list the webhook's Deployment and pods: "+w.WorkloadErr
		res.Remedy = "grant list on deployments and pods in " + w.Namespace
		return res
	}
	if len(w.Deployments) == 0 && len(w.Pods) == 0 {
		if url := w.URL(); url != "" {
			res.Verdict = OK
			res.Evidence = fmt.Sprintf("served at %s, outside the cluster (no pods in %s)", url, where)
			return res
		}
		res.Verdict = Fail
		res.Evidence = "no webhook Deployment or pods in " + where
		res.Remedy = "deploy the webhook (kubectl get pods -n " + w.Namespace + "), or name where it runs with --webhook-namespace and --webhook-selector"
		return res
	}
	var facts, problems []string
	for _, d := range w.Deployments {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		fact := fmt.Sprintf("Deployment %s %d/%d ready", d.Name, d.Status.ReadyReplicas, want)
		facts = append(facts, fact)
		if d.Status.ReadyReplicas < want || want == 0 {
			problems = append(problems, fact)
		}
	}
	ready := 0
	for i := range w.Pods {
		p := &w.Pods[i]
		if podstatus.Ready(p) {
			ready++
			continue
		}
		problems = append(problems, fmt.Sprintf("pod %s not ready (%s)", p.Name, podState(p)))
	}
	facts = append(facts, fmt.Sprintf("%d of %d pod(s) ready", ready, len(w.Pods)))
	res.Evidence = strings.Join(facts, ", ")
	if len(problems) > 0 || ready == 0 {
		res.Verdict = Fail
		if len(problems) > 0 {
			res.Evidence += ": " + strings.Join(problems, "; ")
		}
		res.Remedy = fmt.Sprintf("with failurePolicy Fail no GPU pod can be created until it is ready: kubectl describe pods -n %s -l %s; kubectl logs -n %s -l %s", w.Namespace, w.Selector, w.Namespace, w.Selector)
		return res
	}
	res.Verdict = OK
	return res
}

// podState is the most telling state of a pod: a container's waiting or
// terminated reason, else its phase.
func podState(p *corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Waiting != nil && s.State.Waiting.Reason != "" {
			return s.State.Waiting.Reason
		}
		if s.State.Terminated != nil {
			return s.State.Terminated.Reason
		}
	}
	return orNone(string(p.Status.Phase))
}

// JudgeEndpoints checks that the clientConfig's Service exists, has the
// port and ready endpoints (EndpointSlices) for the API server to call.
func JudgeEndpoints(w *WebhookEvidence) Result {
	ref := w.ServiceRef()
	svc := ref.Namespace + "/" + ref.Name
	res := Result{Check: CheckWebhookEndpoints, Object: "service/" + svc}
	if w.Service == nil {
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("Service %s: %s", svc, orNone(w.ServiceErr))
		res.Remedy = "create the Service the registration names, or fix clientConfig.service"
		return res
	}
	port := servicePort(ref)
	if !slices.ContainsFunc(w.Service.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }) {
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("Service %s has no port %d, which the registration calls", svc, port)
		res.Remedy = fmt.Sprintf("add port %d to the Service (targetPort: the webhook's listen port, 8443 by default)", port)
		return res
	}
	var ready, notReady []string
	for _, s := range w.EndpointSlices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready = append(ready, e.Addresses...)
			} else {
				notReady = append(notReady, e.Addresses...)
			}
		}
	}
	if len(ready) == 0 {
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("Service %s has no ready endpoint (%d not ready): the API server has nowhere to send GPU pods", svc, len(notReady))
		res.Remedy = fmt.Sprintf("make the webhook pods ready, and check the Service's selector matches them: kubectl get endpointslices -n %s -l kubernetes.io/service-name=%s", ref.Namespace, ref.Name)
		return res
	}
	res.Verdict = OK
	res.Evidence = fmt.Sprintf("Service %s has %d ready endpoint(s): %s", svc, len(ready), strings.Join(ready, ", "))
	if len(notReady) > 0 {
		res.Evidence += fmt.Sprintf(" (%d not ready)", len(notReady))
	}
	return res
}

// JudgeTLS judges a TLS handshake with the webhook. Not reaching it from where
// doctor runs (pod addresses from a laptop) says nothing about the API
// server, so that is a warning; the dry run tests the API server's path.
func JudgeTLS(h *Handshake) Result {
	res := Result{Check: CheckWebhookTLS}
	switch {
	case h.Unreachable:
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("could not reach %s from here: %s", h.Address, h.Err)
		res.Remedy = "if the dry run passes, the API server reaches it and only this machine does not; otherwise start the webhook, or run doctor inside the cluster to see its certificate"
	case h.Err != "":
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("connected to %s, but the TLS handshake failed: %s", h.Address, h.Err)
		res.Remedy = "the webhook must serve HTTPS on that port (gpuslice webhook --listen-address, --tls-cert-file)"
	case len(h.Chain) == 0:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("TLS handshake with %s presented no certificate", h.Address)
		res.Remedy = "give the webhook a serving certificate"
	default:
		leaf := h.Chain[0]
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("TLS handshake with %s: certificate %s, issued by %q", h.Address, describeNames(leaf), leaf.Issuer.CommonName)
	}
	return res
}

func describeNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return fmt.Sprintf("CN=%s (no subject alternative names)", c.Subject.CommonName)
	}
	return "for " + strings.Join(names, ", ")
}

// JudgeCABundle checks that the registration's caBundle verifies the
// certificate the webhook presented, for the name the API server connects
// to, as the API server will. Expiry is left to JudgeCertExpiry.
func JudgeCABundle(w *WebhookEvidence, now time.Time) Result {
	res := Result{Check: CheckWebhookCABundle, Object: mwcObject(w.ConfigName)}
	hook, h := w.hook(), w.Handshake
	if hook == nil {
		res.Verdict, res.Evidence = Warn, "no registration to read the caBundle from"
		return res
	}
	leaf := h.Chain[0]
	bundle := hook.ClientConfig.CABundle
	if len(strings.TrimSpace(string(bundle))) == 0 {
		res.Verdict = Warn
		res.Evidence = "caBundle is empty: the API server checks the certificate against its own system roots"
		res.Remedy = "put the webhook's CA in caBundle (cert-manager: annotation cert-manager.io/inject-ca-from; gpuslice webhook --self-signed does it)"
		return res
	}
	roots, cas, err := parseBundle(bundle)
	if err != nil {
		res.Verdict, res.Evidence = Fail, "caBundle: "+err.Error()
		res.Remedy = "set caBundle to the PEM of the CA that signs the webhook's certificate"
		return res
	}
	inter := x509.NewCertPool()
	for _, c := range h.Chain[1:] {
		inter.AddCert(c)
	}
	// Verify inside the leaf's validity, so an expired certificate is
	// reported by its own check rather than as a trust problem.
	at := now
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter.Add(-time.Second)
	}
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore.Add(time.Second)
	}
	// Default key usage: server authentication, as the API server asks.
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: h.ServerName, CurrentTime: at})
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("the webhook's certificate is issued by %q, which is not a CA in the caBundle (%s): the API server refuses the connection (x509: certificate signed by unknown authority)", leaf.Issuer.CommonName, strings.Join(cas, ", "))
		res.Remedy = "put the issuing CA in caBundle, or reissue the serving certificate from the caBundle's CA (cert-manager's CA injector, or gpuslice webhook --self-signed, keep them in step)"
	case errors.As(err, &host):
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("the webhook's certificate is %s, not for %s, which the API server connects to", describeNames(leaf), h.ServerName)
		res.Remedy = fmt.Sprintf("reissue the serving certificate with %s in its subject alternative names", h.ServerName)
	case err != nil:
		res.Verdict, res.Evidence = Fail, "the caBundle does not verify the webhook's certificate: "+err.Error()
		res.Remedy = "reissue the serving certificate from the caBundle's CA"
	default:
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("caBundle (%s) verifies the webhook's certificate for %s", strings.Join(cas, ", "), h.ServerName)
	}
	return res
}

// parseBundle reads a PEM bundle into a pool and the CAs' names.
func parseBundle(pemData []byte) (*x509.CertPool, []string, error) {
	pool := x509.NewCertPool()
	var names []string
	for rest := pemData; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("a certificate does not parse: %w", err)
		}
		pool.AddCert(c)
		names = append(names, fmt.Sprintf("%q", c.Subject.CommonName))
	}
	if len(names) == 0 {
		return nil, nil, errors.New("no PEM certificate in it")
	}
	return pool, names, nil
}

// JudgeCertExpiry fails when the serving certificate has expired and warns
// within warnWithin of its end.
func JudgeCertExpiry(leaf *x509.Certificate, now time.Time) Result {
	res := Result{Check: CheckWebhookCertExpiry}
	left := leaf.NotAfter.Sub(now)
	until := leaf.NotAfter.UTC().Format(time.RFC3339)
	renew := "renew the serving certificate: cert-manager renews it before it ends, gpuslice webhook --self-signed renews in memory; files are reloaded without a restart"
	switch {
	case left <= 0:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("the webhook's certificate expired %s ago (%s): the API server refuses it", roundDuration(-left), until)
		res.Remedy = renew
	case left < warnWithin(leaf):
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("the webhook's certificate expires in %s (%s)", roundDuration(left), until)
		res.Remedy = renew
	default:
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("the webhook's certificate is valid for %s more (until %s)", roundDuration(left), until)
	}
	return res
}

// roundDuration writes days when there are some, else hours and minutes.
func roundDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}

// JudgeDryRun checks that the probe pod created with dryRun All came back
// with its devices. This is the path every GPU pod takes, so a webhook the
// API server cannot call fails here with the failure-policy error.
func JudgeDryRun(d *DryRun) Result {
	res := Result{Check: CheckWebhookDryRun, Object: "namespace/" + d.Namespace}
	probe := fmt.Sprintf("a probe pod (gpu-directories: %s, dry run: nothing stored) in namespace %s", d.Profile.Name, d.Namespace)
	if d.Err != "" {
		res.Verdict = Fail
		res.Evidence = probe + " was refused: " + d.Err
		switch {
		case strings.Contains(d.Err, "failed calling webhook"):
			res.Evidence = "the API server could not call the webhook for " + probe + ": " + d.Err
			res.Remedy = "failurePolicy Fail refuses every annotated pod until the webhook answers: fix what the webhook-* checks above report"
			if strings.Contains(d.Err, "x509") {
				res.Remedy += " (x509: the caBundle and the serving certificate disagree, see webhook-ca-bundle)"
			}
		case strings.Contains(d.Err, "denied the request"):
			res.Remedy = "the webhook's message says why; a profile limited to other namespaces, or an excluded namespace, refuses GPU pods here"
		case strings.Contains(d.Err, "PodSecurity"):
			res.Remedy = "GPU pods need hostPath devices: label the namespace pod-security.kubernetes.io/enforce=privileged, or run them in a namespace that allows it"
		case strings.Contains(d.Err, "cannot create resource"):
			res.Verdict = Warn
			res.Remedy = "grant create on pods in " + d.Namespace + " (a dry run stores nothing) to test the webhook through the API server"
		case strings.Contains(d.Err, "not found"):
			res.Verdict = Warn
			res.Remedy = "pass -n with an existing namespace where GPU pods run"
		default:
			res.Remedy = "read the message: it is what a GPU pod created now would get"
		}
		return res
	}
	if d.Pod == nil {
		res.Verdict, res.Evidence = Warn, "the dry run was not made"
		return res
	}
	want := []inject.Profile{d.Profile}
	volumes, mounts := missingDevices(d.Pod, want)
	rc := d.Pod.Spec.RuntimeClassName
	if len(volumes) > 0 || len(mounts) > 0 || (d.Profile.RuntimeClassName != "" && rc == nil) {
		res.Verdict = Fail
		res.Evidence = probe + " was admitted without its devices: the webhook was not called"
		if len(volumes) < len(devicePaths(want)) {
			res.Evidence = fmt.Sprintf("%s was admitted with only part of its devices (missing %s)", probe, strings.Join(volumes, ", "))
		}
		if len(d.Warnings) > 0 {
			res.Evidence += "; warnings: " + strings.Join(d.Warnings, "; ")
		}
		res.Remedy = "check the registration's namespaceSelector and matchConditions select this namespace and annotated pods: kubectl get mutatingwebhookconfiguration -o yaml"
		return res
	}
	res.Verdict = OK
	res.Evidence = fmt.Sprintf("%s came back with %s", probe, strings.Join(devicePaths(want), ", "))
	if rc != nil {
		res.Evidence += " and runtimeClassName " + *rc
	}
	return res
}
