package webhook

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
)

func TestParseTLSOptions(t *testing.T) {
	o, err := ParseTLSOptions("", nil)
	if err != nil || o.MinVersion != tls.VersionTLS12 || len(o.CipherSuites) != len(DefaultCipherSuites) {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	for _, id := range o.CipherSuites {
		if name := tls.CipherSuiteName(id); strings.Contains(name, "CBC") {
			t.Errorf("default suite %s uses CBC", name)
		}
	}
	if o, err := ParseTLSOptions("VersionTLS13", []string{" TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"}); err != nil || o.MinVersion != tls.VersionTLS13 || o.CipherSuites[0] != tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA {
		t.Errorf("explicit choice: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		version string
		suites  []string
		want    string
	}{
		{"VersionTLS10", nil, `--tls-min-version "VersionTLS10" is not a version gpuslice serves: use VersionTLS12 or VersionTLS13`},
		{"1.2", nil, "use VersionTLS12"},
		{"", []string{"TLS_FOO"}, `unknown suite "TLS_FOO"; choose from TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,`},
		{"", []string{"TLS_RSA_WITH_RC4_128_SHA"}, "TLS_RSA_WITH_RC4_128_SHA is insecure"},
		{"", []string{"TLS_AES_128_GCM_SHA256"}, "TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite"},
	} {
		if _, err := ParseTLSOptions(tc.version, tc.suites); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTLSOptions(%q, %q) = %v, want an error with %q", tc.version, tc.suites, err, tc.want)
		}
	}
}

// TestServerRefusesWeakTLS: with the defaults, a client limited to TLS 1.1
// or to a CBC-SHA1 suite gets no connection; a modern one does.
func TestServerRefusesWeakTLS(t *testing.T) {
	client, tlsURL, _, _ := startServer(t)
	base := client.Transport.(*http.Transport).TLSClientConfig
	for _, tc := range []struct {
		name string
		cfg  func(c *tls.Config)
		ok   bool
	}{
		{"TLS 1.1", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11 }, false},
		{"CBC-SHA1 only", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
		}, false},
		{"TLS 1.2 GCM", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, true},
		{"TLS 1.3", func(*tls.Config) {}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base.Clone()
			tc.cfg(cfg)
			conn, err := tls.Dial("tcp", strings.TrimPrefix(tlsURL, "https://"), cfg)
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("handshake error %v, want success %v", err, tc.ok)
			}
		})
	}
}
