package pluginconfig

import (
	"errors"
	"slices"
	"testing"
)

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		err  FieldError
		want string
	}{
		{FieldError{Path: "version", Line: 1, Message: "bad", Fix: "set version: v1"}, "version (line 1): bad (fix: set version: v1)"},
		{FieldError{Path: "version", Message: "bad", Fix: "fix it"}, "version: bad (fix: fix it)"},
		{FieldError{Line: 3, Message: "YAML syntax error"}, "line 3: YAML syntax error"},
		{FieldError{Message: "empty"}, "empty"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	errs := ValidationErrors{
		{Path: "a", Message: "first", Fix: "one"},
		{Path: "b", Line: 2, Message: "second", Fix: "two"},
	}
	if got, want := errs.Error(), "a: first (fix: one)\nb (line 2): second (fix: two)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var fe FieldError
	if !errors.As(errs.Err(), &fe) || fe.Path != "a" {
		t.Errorf("errors.As(FieldError) = %+v", fe)
	}
	if ValidationErrors(nil).Err() != nil {
		t.Error("Err() of no problems is not nil")
	}

	sorted := ValidationErrors{{Path: "none"}, {Path: "late", Line: 9}, {Path: "early", Line: 2}, {Path: "also late", Line: 9}}
	sorted.sortByLine()
	var order []string
	for _, e := range sorted {
		order = append(order, e.Path)
	}
	if want := []string{"early", "late", "also late", "none"}; !slices.Equal(order, want) {
		t.Errorf("sortByLine order %v, want %v", order, want)
	}
}
