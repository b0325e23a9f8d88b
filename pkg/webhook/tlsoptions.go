package webhook

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// TLSOptions are the server's protocol floor and TLS 1.2 cipher suites
// (TLS 1.3's are fixed by Go and always strong).
type TLSOptions struct {
	MinVersion   uint16
	CipherSuites []uint16
}

// DefaultCipherSuites are the ECDHE AEAD suites: forward secret and
// without CBC, so no SHA-1 MAC and no Lucky13-style padding oracles. The
// API server's client offers them all.
var DefaultCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// DefaultTLSMinVersion is the floor when --tls-min-version is not given.
const DefaultTLSMinVersion = "VersionTLS12"

var tlsVersions = map[string]uint16{"VersionTLS12": tls.VersionTLS12, "VersionTLS13": tls.VersionTLS13}

// ParseTLSOptions reads --tls-min-version (VersionTLS12 or VersionTLS13,
// as the API server names them) and --tls-cipher-suites (IANA names;
// empty means DefaultCipherSuites).
func ParseTLSOptions(minVersion string, suites []string) (TLSOptions, error) {
	var o TLSOptions
	if minVersion == "" {
		minVersion = DefaultTLSMinVersion
	}
	v, ok := tlsVersions[minVersion]
	if !ok {
		return o, fmt.Errorf("--tls-min-version %q is not a version gpuslice serves: use VersionTLS12 or VersionTLS13", minVersion)
	}
	o.MinVersion = v
	if len(suites) == 0 {
		suites = DefaultCipherSuites
	}
	byName := map[string]*tls.CipherSuite{}
	for _, s := range tls.CipherSuites() {
		byName[s.Name] = s
	}
	insecure := map[string]bool{}
	for _, s := range tls.InsecureCipherSuites() {
		insecure[s.Name] = true
	}
	var known []string
	for name, s := range byName {
		if slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			known = append(known, name)
		}
	}
	slices.Sort(known)
	for _, name := range suites {
		name = strings.TrimSpace(name)
		s := byName[name]
		switch {
		case insecure[name]:
			return o, fmt.Errorf("--tls-cipher-suites: %s is insecure (Go's tls.InsecureCipherSuites); choose from %s", name, strings.Join(known, ", "))
		case s == nil:
			return o, fmt.Errorf("--tls-cipher-suites: unknown suite %q; choose from %s", name, strings.Join(known, ", "))
		case !slices.Contains(s.SupportedVersions, tls.VersionTLS12):
			return o, fmt.Errorf("--tls-cipher-suites: %s is a TLS 1.3 suite, which Go always enables and cannot be chosen; list TLS 1.2 suites only", name)
		}
		o.CipherSuites = append(o.CipherSuites, s.ID)
	}
	return o, nil
}

// orDefault fills what o leaves zero from the defaults.
func (o TLSOptions) orDefault() TLSOptions {
	d, _ := ParseTLSOptions("", nil) // the defaults always parse
	if o.MinVersion == 0 {
		o.MinVersion = d.MinVersion
	}
	if len(o.CipherSuites) == 0 {
		o.CipherSuites = d.CipherSuites
	}
	return o
}
