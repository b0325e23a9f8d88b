package registration

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/certs"
)

// CAValidity is the life of a bootstrapped CA: years, not a decade, so a
// leaked CA key stops mattering in time. Leaves are short-lived and renewed
// in memory; the CA, whose copy sits in the caBundle, changes rarely.
const CAValidity = 3 * 365 * 24 * time.Hour

// CARenewBefore: a replica that starts with less than this left on the CA
// bootstraps a new one. The caBundle keeps the old CA until it expires, so
// replicas still serving leaves of the old CA are trusted meanwhile; every
// leaf lives far shorter than this.
const CARenewBefore = 365 * 24 * time.Hour

// BootstrapCA returns the webhook's self-signed CA from Secret
// namespace/name, creating it on first use, and replacing it when less than
// CARenewBefore is left. Replicas racing to create or replace it all end up
// with the one that won.
func BootstrapCA(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*certs.CA, error) {
	secrets := cs.CoreV1().Secrets(namespace)
	for range 3 {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			ca, err := certs.LoadCA(certs.KeyPair{CertPEM: s.Data[corev1.TLSCertKey], KeyPEM: s.Data[corev1.TLSPrivateKeyKey]})
			if err != nil {
				return nil, fmt.Errorf("reading CA from Secret %s/%s: %w; delete the Secret to have a new CA bootstrapped", namespace, name, err)
			}
			if time.Until(ca.Certificate().NotAfter) >= CARenewBefore {
				return ca, nil
			}
			next, err := certs.NewCA("gpuslice webhook CA", CAValidity)
			if err != nil {
				return nil, err
			}
			s.Data = map[string][]byte{corev1.TLSCertKey: next.CertPEM, corev1.TLSPrivateKeyKey: next.KeyPEM}
			// The resourceVersion read guards the update: a replica that
			// lost the race reads the winner's CA.
			_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
			switch {
			case err == nil:
				return next, nil
			case apierrors.IsConflict(err):
				continue
			default:
				return nil, secretErr(namespace, name, "renewing", err)
			}
		}
		if !apierrors.IsNotFound(err) {
			return nil, secretErr(namespace, name, "reading", err)
		}
		ca, err := certs.NewCA("gpuslice webhook CA", CAValidity)
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{
				"app.kubernetes.io/name": "gpuslice", "app.kubernetes.io/component": "webhook-ca",
			}},
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: ca.CertPEM, corev1.TLSPrivateKeyKey: ca.KeyPEM},
		}, metav1.CreateOptions{})
		if err == nil {
			return ca, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, secretErr(namespace, name, "creating", err)
		}
		// Another replica created it first: read theirs.
	}
	return nil, fmt.Errorf("bootstrapping CA Secret %s/%s: it keeps appearing and disappearing; check what else manages it", namespace, name)
}

func secretErr(namespace, name, verb string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s CA Secret %s/%s: %w; grant get, create and update on secrets in %s to the webhook's ServiceAccount", verb, namespace, name, err, namespace)
	}
	return fmt.Errorf("%s CA Secret %s/%s: %w", verb, namespace, name, err)
}

// ServiceDNSNames are the names the API server may use to reach a Service.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}
