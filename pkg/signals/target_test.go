package signals

import "testing"

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
		err  []string
	}{
		{in: "http://10.0.0.5:9400/metrics", want: Target{URL: "http://10.0.0.5:9400/metrics"}},
		{in: "http://10.0.0.5:9400", want: Target{URL: "http://10.0.0.5:9400/metrics"}},
		{in: "https://dcgm.example/", want: Target{URL: "https://dcgm.example/metrics"}},
		{in: " homelabai=http://10.0.0.5:9400/metrics ", want: Target{Node: "homelabai", URL: "http://10.0.0.5:9400/metrics"}},
		{in: "gpu-1.lan=http://h:9400/custom/path?x=1", want: Target{Node: "gpu-1.lan", URL: "http://h:9400/custom/path?x=1"}},
		{in: "http://h:9400/metrics?a=b", want: Target{URL: "http://h:9400/metrics?a=b"}},
		{in: "", err: []string{"has no URL", "NODE=URL"}},
		{in: "homelabai=", err: []string{`"homelabai=" has no URL`}},
		{in: "=http://h:9400", err: []string{"the node before = is empty"}},
		{in: "Homelab_AI=http://h:9400", err: []string{`node "Homelab_AI" is not a node name`}},
		{in: "10.0.0.5:9400", err: []string{"needs http:// or https://"}},
		{in: "ftp://h/metrics", err: []string{"needs http:// or https://"}},
		{in: "http:///metrics", err: []string{"has no host"}},
		{in: "http://h:port/", err: []string{"invalid port"}},
		{in: "homelabai", err: []string{"needs http:// or https://", "e.g. homelabai=http://"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			wantErr(t, err, tc.err...)
			if got != tc.want {
				t.Errorf("ParseTarget(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzParseTarget: no input panics, and what parses is a URL with a scheme.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"http://h:9400", "n=http://h", "=", "a=b=c://d", "http://[::1]:9400/metrics"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err == nil && got.URL == "" {
			t.Errorf("ParseTarget(%q) = %+v without error", s, got)
		}
	})
}
