package suggest

import "testing"

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"replica", "replicas", 1},
		{"renameByDefualt", "renameByDefault", 1}, // a swap costs one
		{"gpu", "gpus", 1},
		{"mixed", "none", 4},
		{"", "abc", 3},
	}
	for _, tt := range tests {
		if got := EditDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	fields := []string{"renameByDefault", "failRequestsGreaterThanOne", "resources"}
	tests := []struct {
		in       string
		want     string
		caseOnly bool
	}{
		{"RenameByDefault", "renameByDefault", true},
		{"failRequestGreaterThanOne", "failRequestsGreaterThanOne", false},
		{"resource", "resources", false},
		{"replicas", "", false},
		{"x", "", false},
	}
	for _, tt := range tests {
		got, caseOnly := Closest(tt.in, fields)
		if got != tt.want || caseOnly != tt.caseOnly {
			t.Errorf("Closest(%q) = %q, %v; want %q, %v", tt.in, got, caseOnly, tt.want, tt.caseOnly)
		}
	}
}
