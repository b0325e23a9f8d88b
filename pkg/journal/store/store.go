// Package store reads and appends to a journal (package journal) kept in
// a ConfigMap: the admission gate's, written by every webhook replica and
// by gpuslice admit --break-glass, and read by gpuslice history beside
// the arbiter's.
package store

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/ops"
)

// Ref names the ConfigMap that holds a journal.
type Ref struct {
	Namespace, Name string
}

func (r Ref) String() string { return "configmap " + r.Namespace + "/" + r.Name }

// Read reads a journal; one not written yet is empty (found false).
func Read(ctx context.Context, cs kubernetes.Interface, ref Ref) (j *journal.Journal, found bool, err error) {
	j, cm, err := read(ctx, cs, ref)
	return j, cm != nil, err
}

// read returns the journal and its ConfigMap, nil when there is none.
func read(ctx context.Context, cs kubernetes.Interface, ref Ref) (*journal.Journal, *corev1.ConfigMap, error) {
	cm, err := cs.CoreV1().ConfigMaps(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return journal.New(), nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("reading the journal, %s: %w", ref, err)
	}
	j, err := journal.Decode(ref.String(), cm.Data)
	return j, cm, err
}

// lostRaceBackoff spaces the retries of a write that lost the race to
// another writer; jitter keeps two replicas from colliding again.
var lostRaceBackoff = wait.Backoff{Steps: 8, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.5}

// Append adds entries to the journal at ref (journal.Add: repeats are
// counted into one entry), creating the ConfigMap, labelled managed by
// managedBy, when it does not exist; an existing one keeps its labels and
// annotations (the chart's, which Helm needs to upgrade it). Several
// writers may append at once: a write that lost the race (a conflict)
// reads the journal again and adds the entries to what the other wrote.
func Append(ctx context.Context, cs kubernetes.Interface, ref Ref, entries []journal.Entry, managedBy string) error {
	client := cs.CoreV1().ConfigMaps(ref.Namespace)
	lostRace := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	return retry.OnError(lostRaceBackoff, lostRace, func() error {
		j, cm, err := read(ctx, cs, ref)
		if err != nil {
			return err
		}
		for _, e := range entries {
			j.Add(e)
		}
		data, err := j.Encode()
		if err != nil {
			return err
		}
		if cm != nil {
			// Pinned to the resourceVersion read: a conflict means another
			// writer got there first.
			cm.Data = data
			_, err = client.Update(ctx, cm, metav1.UpdateOptions{FieldManager: ops.FieldManager})
		} else {
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": managedBy}},
				Data:       data,
			}
			_, err = client.Create(ctx, cm, metav1.CreateOptions{FieldManager: ops.FieldManager})
		}
		if err != nil {
			return fmt.Errorf("writing the journal, %s: %w", ref, err)
		}
		return nil
	})
}
