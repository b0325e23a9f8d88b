package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestDemoRealNodeRefusals: --real-node says why it cannot run before
// anything starts: a release build lacks the real node, a user who is not
// root cannot run a kubelet, and --keep has nothing to keep.
func TestDemoRealNodeRefusals(t *testing.T) {
	stub := func(context.Context, io.Writer) (*realNodeResult, error) { return nil, errors.New("not reached") }
	for _, tc := range []struct {
		name  string
		built bool
		args  []string
		want  string
	}{
		{name: "built without the real node", args: []string{"demo", "--real-node"}, want: errRealNodeNotBuilt.Error()},
		{name: "keep", built: true, args: []string{"demo", "--real-node", "--keep"}, want: "drop --keep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := playRealNode
			defer func() { playRealNode = saved }()
			playRealNode = nil
			if tc.built {
				playRealNode = stub
			}
			_, err := run(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("gpuslice %v: %v, want an error saying %q", tc.args, err, tc.want)
			}
		})
	}
}
