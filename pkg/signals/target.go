package signals

import (
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Target is one exporter URL, with an optional node name that overrides
// the node label (for exporters whose Hostname is the pod's name).
type Target struct{ Node, URL string }

// targetHint is the syntax, for errors.
const targetHint = "want URL or NODE=URL, e.g. homelabai=http://10.0.0.5:9400/metrics"

// ParseTarget reads "URL" or "NODE=URL", as given on the command line. The
// URL needs an http or https scheme and a host; a URL with no path gets
// /metrics, where dcgm-exporter serves. NODE must be a valid node name.
func ParseTarget(s string) (Target, error) {
	in := strings.TrimSpace(s)
	s = in
	var t Target
	// "=" before "://" separates the node; one after it is the URL's own.
	if eq, scheme := strings.Index(s, "="), strings.Index(s, "://"); eq >= 0 && (scheme < 0 || eq < scheme) {
		t.Node, s = strings.TrimSpace(s[:eq]), strings.TrimSpace(s[eq+1:])
		if t.Node == "" {
			return Target{}, fmt.Errorf("target %q: the node before = is empty; %s", in, targetHint)
		}
		if errs := validation.IsDNS1123Subdomain(t.Node); len(errs) > 0 {
			return Target{}, fmt.Errorf("target node %q is not a node name: %s; %s", t.Node, strings.Join(errs, "; "), targetHint)
		}
	}
	if s == "" {
		return Target{}, fmt.Errorf("target %q has no URL; %s", in, targetHint)
	}
	if !strings.Contains(s, "://") {
		return Target{}, fmt.Errorf("target URL %q needs http:// or https://; %s", s, targetHint)
	}
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("target URL %q: %w; %s", s, err, targetHint)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Target{}, fmt.Errorf("target URL %q needs http:// or https://; %s", s, targetHint)
	}
	if u.Host == "" {
		return Target{}, fmt.Errorf("target URL %q has no host; %s", s, targetHint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	t.URL = u.String()
	return t, nil
}
