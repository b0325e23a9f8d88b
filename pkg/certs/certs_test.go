package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssueVerifiesAgainstCA(t *testing.T) {
	ca := newCA(t)
	pair, err := ca.Issue(LeafOptions{CommonName: "gpu-webhook.gpu-system.svc", DNSNames: []string{"gpu-webhook.gpu-system.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, ValidFor: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ParseCertificate(pair.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	for _, name := range []string{"gpu-webhook.gpu-system.svc", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	if leaf.NotAfter.After(ca.Certificate().NotAfter) {
		t.Errorf("leaf outlives its CA: %s > %s", leaf.NotAfter, ca.Certificate().NotAfter)
	}
}

func TestLoadCARejectsLeaf(t *testing.T) {
	ca := newCA(t)
	leaf, err := ca.Issue(LeafOptions{CommonName: "leaf", ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(leaf); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("LoadCA(leaf) = %v, want 'not a CA'", err)
	}
	if _, err := LoadCA(KeyPair{CertPEM: []byte("junk"), KeyPEM: []byte("junk")}); err == nil {
		t.Fatal("LoadCA(junk) succeeded")
	}
}

func TestAppendBundle(t *testing.T) {
	a, b := newCA(t), newCA(t)
	one := AppendBundle(nil, a.CertPEM)
	if strings.Count(string(one), "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("bundle of one: %s", one)
	}
	if again := AppendBundle(one, a.CertPEM); string(again) != string(one) {
		t.Errorf("adding a present CA changed the bundle")
	}
	two := AppendBundle(one, b.CertPEM)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(two) || strings.Count(string(two), "BEGIN CERTIFICATE") != 2 {
		t.Errorf("bundle of two does not hold both: %s", two)
	}
}

// An expired CA leaves the bundle when the next one is added, and is never
// added; the one still valid stays.
func TestAppendBundleDropsExpired(t *testing.T) {
	valid := newCA(t)
	old, err := NewCA("expired CA", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		bundle, add []byte
		want        []*CA
	}{
		{name: "expired in the bundle", bundle: old.CertPEM, add: valid.CertPEM, want: []*CA{valid}},
		{name: "expired added", bundle: valid.CertPEM, add: old.CertPEM, want: []*CA{valid}},
		{name: "both valid stay", bundle: valid.CertPEM, add: newCA(t).CertPEM, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendBundle(tt.bundle, tt.add))
			if strings.Contains(got, strings.TrimSpace(string(old.CertPEM))) {
				t.Errorf("the expired CA is still in the bundle")
			}
			for _, ca := range tt.want {
				if !strings.Contains(got, strings.TrimSpace(string(ca.CertPEM))) {
					t.Errorf("a valid CA left the bundle")
				}
			}
		})
	}
	// Once the last CA has expired, the bundle holds none.
	if got := appendBundle(valid.CertPEM, nil, valid.Certificate().NotAfter.Add(time.Second)); strings.Contains(string(got), "BEGIN") {
		t.Errorf("bundle after every CA expired: %s", got)
	}
}

func servedSerial(t *testing.T, s Source) string {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.String()
}

func TestFileSourceReloads(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func() KeyPair {
		p, err := ca.Issue(LeafOptions{CommonName: "127.0.0.1", ValidFor: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WriteFiles(cert, key); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var reloads, failures int
	onReload := func(_ time.Time, err error) {
		if err != nil {
			failures++
		} else {
			reloads++
		}
	}
	if _, err := NewFileSource(cert, key, onReload); err == nil {
		t.Fatal("NewFileSource without files succeeded")
	}
	failures = 0
	write()
	s, err := NewFileSource(cert, key, onReload)
	if err != nil {
		t.Fatal(err)
	}
	first := servedSerial(t, s)
	if again := servedSerial(t, s); again != first || reloads != 1 {
		t.Fatalf("unchanged files reloaded (%d loads) or changed serial", reloads)
	}

	write()
	second := servedSerial(t, s)
	if second == first {
		t.Fatal("rotation not picked up by the next handshake")
	}

	// A rotation caught half way: new certificate, old key. The old pair
	// keeps being served and the failure is reported.
	p, err := ca.Issue(LeafOptions{CommonName: "127.0.0.1", ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(cert, p.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, s); got != second || failures == 0 {
		t.Fatalf("half-written pair: served %s (want the previous %s), %d failures reported", got, second, failures)
	}
	if err := writeAtomic(key, p.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, s); got == second {
		t.Fatal("completed rotation not picked up")
	}

	// Files gone (a Secret being replaced): keep serving.
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{}); err != nil {
		t.Fatalf("missing files broke serving: %v", err)
	}
}

func TestIssuingSourceRenews(t *testing.T) {
	ca := newCA(t)
	s, err := NewIssuingSource(ca, LeafOptions{CommonName: "gpu-webhook.gpu-system.svc", DNSNames: []string{"gpu-webhook.gpu-system.svc"}, ValidFor: 30 * time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := servedSerial(t, s)
	if servedSerial(t, s) != first {
		t.Fatal("renewed before its time")
	}
	// Two thirds of the leaf's life later (NotBefore is an hour early for
	// clock skew, so step well past the renewal point).
	s.now = func() time.Time { return time.Now().Add(25 * time.Minute) }
	if servedSerial(t, s) == first {
		t.Fatal("not renewed after two thirds of its life")
	}
	if s.NotAfter().Before(time.Now()) {
		t.Error("renewed leaf already expired")
	}
}

func TestIssuingSourceReportsFailure(t *testing.T) {
	ca := newCA(t)
	var got error
	s, err := NewIssuingSource(ca, LeafOptions{CommonName: "x", ValidFor: time.Hour}, func(_ time.Time, err error) { got = err })
	if err != nil || got != nil {
		t.Fatalf("first issue: %v %v", err, got)
	}
	ca.key = failingSigner{ca.key}
	s.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{}); err != nil {
		t.Fatalf("a failed renewal stopped serving: %v", err)
	}
	if got == nil {
		t.Error("failed renewal not reported")
	}
}

// failingSigner is a CA key that refuses to sign, as an HSM gone away would.
type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("signer unavailable")
}
