// Package certs issues the certificates gpuslice needs: a self-signed CA and
// serving certificates signed by it, for the admission webhook (whose CA goes
// into the MutatingWebhookConfiguration's caBundle) and for the local control
// plane used by tests and the demo.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// KeyPair is a certificate with its private key, both PEM encoded.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// CA is a certificate authority that can sign leaf certificates.
type CA struct {
	KeyPair
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA creates a self-signed CA valid for the given duration.
func NewCA(commonName string, validFor time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"gpuslice"}},
		NotBefore:             now.Add(-time.Hour), // tolerate small clock skew
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing CA %q: %w", commonName, err)
	}
	pair, err := encode(der, key)
	if err != nil {
		return nil, err
	}
	return LoadCA(pair)
}

// LoadCA parses a CA from its PEM key pair, for example one stored in a Secret.
func LoadCA(pair KeyPair) (*CA, error) {
	tlsCert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing CA key pair: %w", err)
	}
	cert, err := x509.ParseCertificate(tlsCert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA (basicConstraints CA:FALSE)", cert.Subject.CommonName)
	}
	signer, ok := tlsCert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA private key cannot sign")
	}
	return &CA{KeyPair: pair, cert: cert, key: signer}, nil
}

// Certificate returns the parsed CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// LeafOptions describes a certificate to issue.
type LeafOptions struct {
	CommonName   string
	Organization []string // for client certificates: Kubernetes groups
	DNSNames     []string
	IPs          []net.IP
	ValidFor     time.Duration
	Client       bool // client authentication instead of server
}

// Issue signs a new leaf certificate with a fresh key.
func (ca *CA) Issue(o LeafOptions) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generating key for %q: %w", o.CommonName, err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if o.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	now := time.Now()
	notAfter := now.Add(o.ValidFor)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter // a leaf never outlives its CA
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: o.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("signing certificate %q: %w", o.CommonName, err)
	}
	return encode(der, key)
}

// WriteFiles writes the pair to certFile and keyFile. Each file is replaced
// atomically (write then rename), so a reader never sees half a file.
func (p KeyPair) WriteFiles(certFile, keyFile string) error {
	if err := writeAtomic(certFile, p.CertPEM, 0o644); err != nil {
		return err
	}
	return writeAtomic(keyFile, p.KeyPEM, 0o600)
}

// ParseCertificate returns the first certificate of a PEM bundle.
func ParseCertificate(pemData []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return x509.ParseCertificate(block.Bytes)
}

// AppendBundle adds the certificates of add to bundle, skipping ones already
// present, so that a caBundle can trust an old and a new CA during rotation.
// Certificates that have expired are dropped from both: a CA past its
// NotAfter verifies nothing, and left in place the bundle only grows.
func AppendBundle(bundle, add []byte) []byte {
	return appendBundle(bundle, add, time.Now())
}

func appendBundle(bundle, add []byte, now time.Time) []byte {
	var out []byte
	seen := map[string]bool{}
	for _, src := range [][]byte{bundle, add} {
		for rest := src; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if seen[string(block.Bytes)] || expired(block, now) {
				continue
			}
			seen[string(block.Bytes)] = true
			if len(out) > 0 {
				out = append(out, '\n')
			}
			out = append(out, bytes.TrimSpace(pem.EncodeToMemory(block))...)
		}
	}
	return append(out, '\n')
}

// expired is true for a certificate past its NotAfter; anything that does
// not parse as one is kept, for the API server to judge.
func expired(block *pem.Block, now time.Time) bool {
	if block.Type != "CERTIFICATE" {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	return err == nil && now.After(cert.NotAfter)
}

func encode(der []byte, key *ecdsa.PrivateKey) (KeyPair, error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encoding private key: %w", err)
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand never fails on supported platforms; a fixed serial is
		// still a valid certificate.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
