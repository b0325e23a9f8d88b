package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/gpuslice/gpuslice/internal/filestamp"
)

// Source hands the serving certificate to every TLS handshake. Both
// implementations pick up a new certificate without a restart: the next
// handshake after a rotation uses it, and handshakes already in flight keep
// the one they started with.
type Source interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// NotAfter is the expiry of the certificate currently served.
	NotAfter() time.Time
}

// ReloadFunc is told about every reload attempt, for logs and metrics.
type ReloadFunc func(notAfter time.Time, err error)

// FileSource serves a certificate and key from files, as mounted from a
// Secret by cert-manager or by gpuslice's own bootstrap. It checks the
// files' identity (inode, modification time, size) on every handshake (two stat calls), so
// a rotation is seen by the very next connection, and keeps serving the
// previous pair while the new one is unreadable or half written.
type FileSource struct {
	certFile, keyFile string
	onReload          ReloadFunc

	mu      sync.Mutex
	stamp   [2]filestamp.Stamp
	current *tls.Certificate
	expiry  time.Time
}

// NewFileSource loads the pair once; it fails if the files are not a valid
// pair now, because a webhook that starts without a certificate can only
// fail every request.
func NewFileSource(certFile, keyFile string, onReload ReloadFunc) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile, onReload: onReload}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate implements Source.
func (s *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stamp, err := s.stat(); err == nil && stamp != s.stamp {
		// A failed reload is reported and the old pair kept: a rotation
		// caught between writing the certificate and the key must not
		// cost a request.
		_ = s.reloadLocked()
	}
	return s.current, nil
}

// NotAfter implements Source.
func (s *FileSource) NotAfter() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiry
}

func (s *FileSource) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *FileSource) reloadLocked() error {
	stamp, err := s.stat()
	if err == nil {
		var pair tls.Certificate
		pair, err = tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err == nil {
			pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
		}
		if err == nil {
			s.current, s.stamp, s.expiry = &pair, stamp, pair.Leaf.NotAfter
		} else {
			err = fmt.Errorf("loading serving certificate %s with key %s: %w", s.certFile, s.keyFile, err)
		}
	}
	if s.onReload != nil {
		s.onReload(s.expiry, err)
	}
	return err
}

func (s *FileSource) stat() ([2]filestamp.Stamp, error) {
	var out [2]filestamp.Stamp
	for i, name := range []string{s.certFile, s.keyFile} {
		st, err := filestamp.Of(name)
		if err != nil {
			return out, err
		}
		out[i] = st
	}
	return out, nil
}

// IssuingSource serves certificates it issues itself from a CA, renewing the
// leaf in memory once two thirds of its life have passed. Several webhook
// replicas sharing one CA each hold their own leaf.
type IssuingSource struct {
	ca       *CA
	opts     LeafOptions
	onReload ReloadFunc

	mu      sync.Mutex
	current *tls.Certificate
	renewAt time.Time
	now     func() time.Time // the clock; replaced in tests
}

// NewIssuingSource issues the first leaf at once.
func NewIssuingSource(ca *CA, opts LeafOptions, onReload ReloadFunc) (*IssuingSource, error) {
	s := &IssuingSource{ca: ca, opts: opts, onReload: onReload, now: time.Now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.renewLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate implements Source.
func (s *IssuingSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.now().After(s.renewAt) {
		_ = s.renewLocked() // keep serving the old leaf if signing fails
	}
	return s.current, nil
}

// NotAfter implements Source.
func (s *IssuingSource) NotAfter() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current.Leaf.NotAfter
}

func (s *IssuingSource) renewLocked() error {
	pair, err := s.ca.Issue(s.opts)
	var cert tls.Certificate
	if err == nil {
		cert, err = tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	}
	if err == nil {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err != nil {
		err = fmt.Errorf("issuing serving certificate %q: %w", s.opts.CommonName, err)
		if s.onReload != nil {
			s.onReload(time.Time{}, err)
		}
		return err
	}
	// Measured from now, not NotBefore, which is back-dated for clock skew.
	issued := s.now()
	s.current, s.renewAt = &cert, issued.Add(cert.Leaf.NotAfter.Sub(issued)*2/3)
	if s.onReload != nil {
		s.onReload(cert.Leaf.NotAfter, nil)
	}
	return nil
}
