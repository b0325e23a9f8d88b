package policy

import (
	"strings"
	"testing"
	"time"

	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

func classes() PriorityClasses {
	pc := func(name string, v int32, def bool) *schedulingv1.PriorityClass {
		return &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: v, GlobalDefault: def}
	}
	return PriorityClasses{
		"plex-media-critical": pc("plex-media-critical", 1000000, false),
		"ai-dev-gpu":          pc("ai-dev-gpu", 1000, false),
	}
}

func TestParse(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		ann       map[string]string
		class     string
		want      Policy
		wantErr   []string
		wantHours string
	}{
		{name: "unannotated", want: Policy{PriorityFrom: "no PriorityClass", Action: ActionScaleToZero}},
		{name: "plex protected by its class", class: "plex-media-critical", ann: map[string]string{workload.AnnotationProtected: "true"},
			want: Policy{Protected: true, Priority: 1000000, PriorityFrom: "PriorityClass plex-media-critical", Action: ActionScaleToZero}},
		{name: "vllm preemptible in the day", class: "ai-dev-gpu",
			ann:       map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationActiveHours: "07:00-19:00", workload.AnnotationHoldDown: "10m"},
			want:      Policy{Preemptible: true, Priority: 1000, PriorityFrom: "PriorityClass ai-dev-gpu", Action: ActionScaleToZero, HoldDown: 10 * time.Minute},
			wantHours: "07:00-19:00 UTC"},
		{name: "annotation overrides the class", class: "ai-dev-gpu", ann: map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "5"},
			want: Policy{Preemptible: true, Priority: 5, PriorityFrom: "annotation " + workload.AnnotationPriority, Action: ActionScaleToZero}},
		{name: "lower memory", ann: map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPreemptAction: "lower-memory=0.30", workload.AnnotationTimeZone: "Europe/Berlin", workload.AnnotationActiveHours: "22:00-06:00"},
			want:      Policy{Preemptible: true, PriorityFrom: "no PriorityClass", Action: ActionLowerMemory, Fraction: "0.30"},
			wantHours: "22:00-06:00 Europe/Berlin"},
		{name: "every mistake at once", class: "missing",
			ann: map[string]string{workload.AnnotationProtected: "yes", workload.AnnotationPreemptible: "true", workload.AnnotationPreemptAction: "lower-memory=2",
				workload.AnnotationHoldDown: "soon", workload.AnnotationActiveHours: "7-19", workload.AnnotationTimeZone: "Mars/Olympus"},
			wantErr: []string{`gpuslice.io/protected="yes": want true or false`, `PriorityClass "missing", which does not exist`,
				`lower-memory=FRACTION`, `hold-down="soon"`, `"7" is not a time of day`, `"Mars/Olympus": not an IANA time zone`}},
		{name: "both roles", ann: map[string]string{workload.AnnotationProtected: "true", workload.AnnotationPreemptible: "true"}, wantErr: []string{"one or the other"}},
		{name: "scale-to-zero takes no argument", ann: map[string]string{workload.AnnotationPreemptAction: "scale-to-zero=1"}, wantErr: []string{"want scale-to-zero"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.ann, tt.class, classes(), time.UTC)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, policy %+v", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\nlacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hours := ""
			if got.Hours != nil {
				hours = got.Hours.Spec
				if tt.wantHours == "22:00-06:00 Europe/Berlin" && got.Hours.Location != berlin && got.Hours.Location.String() != "Europe/Berlin" {
					t.Errorf("zone %v", got.Hours.Location)
				}
			}
			if hours != tt.wantHours {
				t.Errorf("hours %q, want %q", hours, tt.wantHours)
			}
			got.Hours = nil
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestGlobalDefaultClass(t *testing.T) {
	pcs := classes()
	pcs["b-default"] = &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "b-default"}, Value: 7, GlobalDefault: true}
	pcs["a-default"] = &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "a-default"}, Value: 3, GlobalDefault: true}
	v, from, err := pcs.Priority("")
	if err != nil || v != 3 || !strings.Contains(from, "a-default") {
		t.Errorf("Priority(\"\") = %d %q %v", v, from, err)
	}
}

func TestHours(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		spec   string
		now    string
		active bool
		next   string
	}{
		{"07:00-19:00", "2026-11-28 06:59", false, "2026-11-28 07:00"},
		{"07:00-19:00", "2026-11-28 07:00", true, "2026-11-28 19:00"},
		{"07:00-19:00", "2026-11-28 19:00", false, "2026-11-29 07:00"},
		{"22:00-06:00", "2026-11-28 23:30", true, "2026-11-29 06:00"},
		{"22:00-06:00", "2026-11-28 12:00", false, "2026-11-28 22:00"},
		{"07:00-12:00, 13:00-19:00", "2026-11-28 12:30", false, "2026-11-28 13:00"},
		{"00:00-24:00", "2026-11-28 12:30", true, ""},
		// Daylight saving ends on 2026-10-25 in Berlin: 03:00 comes twice.
		{"02:30-03:30", "2026-10-25 01:00", false, "2026-10-25 02:30"},
	}
	for _, tt := range tests {
		h, err := ParseHours(tt.spec, berlin)
		if err != nil {
			t.Fatalf("%s: %v", tt.spec, err)
		}
		now := at(tt.now)
		if got := h.Active(now); got != tt.active {
			t.Errorf("%s at %s: active %v, want %v", tt.spec, tt.now, got, tt.active)
		}
		next := h.Next(now)
		got := ""
		if !next.IsZero() {
			got = next.In(berlin).Format("2006-01-02 15:04")
		}
		if got != tt.next {
			t.Errorf("%s at %s: next %q, want %q", tt.spec, tt.now, got, tt.next)
		}
	}
	for _, bad := range []string{"7:00-19:00", "07:00", "07:60-08:00", "25:00-01:00", "24:30-01:00", ""} {
		if _, err := ParseHours(bad, berlin); err == nil {
			t.Errorf("ParseHours(%q) accepted", bad)
		}
	}
}
