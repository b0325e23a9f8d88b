package arbiter

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
	"github.com/gpuslice/gpuslice/pkg/ops"
)

// JournalRef names the ConfigMap that holds the arbiter's journal.
type JournalRef = store.Ref

// ReadJournal reads the arbiter's journal; a journal not written yet is
// empty (found false).
func ReadJournal(ctx context.Context, cs kubernetes.Interface, ref JournalRef) (j *journal.Journal, found bool, err error) {
	return store.Read(ctx, cs, ref)
}

// journalStore keeps the journal in memory and writes each change
// through, pinned to the resourceVersion it last saw.
type journalStore struct {
	cs      kubernetes.Interface
	ref     JournalRef
	current *journal.Journal
	// version is the ConfigMap's resourceVersion, "" when it does not
	// exist yet.
	version string
}

// load reads the journal; found is false when the ConfigMap is not there.
func (s *journalStore) load(ctx context.Context) (bool, error) {
	cm, err := s.cs.CoreV1().ConfigMaps(s.ref.Namespace).Get(ctx, s.ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		s.current, s.version = journal.New(), ""
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the arbiter's journal, %s: %w; grant the arbiter get on it", s.ref, err)
	}
	j, err := journal.Decode(s.ref.String(), cm.Data)
	if err != nil {
		return false, err
	}
	s.current, s.version = j, cm.ResourceVersion
	return true, nil
}

// change applies mutate and writes the result. On a conflict (someone
// else edited it) it reads the journal again and applies mutate once more.
func (s *journalStore) change(ctx context.Context, mutate func(*journal.Journal)) error {
	for attempt := 0; ; attempt++ {
		next := s.current.Clone()
		mutate(next)
		err := s.write(ctx, next)
		if err == nil {
			s.current = next
			return nil
		}
		if attempt > 0 || !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return err
		}
		if _, err := s.load(ctx); err != nil {
			return err
		}
	}
}

func (s *journalStore) write(ctx context.Context, j *journal.Journal) error {
	data, err := j.Encode()
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: s.ref.Name, Namespace: s.ref.Namespace, ResourceVersion: s.version,
			Labels: map[string]string{"app.kubernetes.io/managed-by": Identity}},
		Data: data,
	}
	client := s.cs.CoreV1().ConfigMaps(s.ref.Namespace)
	if s.version == "" {
		cm, err = client.Create(ctx, cm, metav1.CreateOptions{FieldManager: ops.FieldManager})
	} else {
		cm, err = client.Update(ctx, cm, metav1.UpdateOptions{FieldManager: ops.FieldManager})
	}
	if err != nil {
		return fmt.Errorf("writing the arbiter's journal, %s: %w", s.ref, err)
	}
	s.version = cm.ResourceVersion
	return nil
}
