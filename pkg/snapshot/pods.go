package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpuslice/gpuslice/pkg/ledger"
)

// podPage is how many pods one list request returns (kubectl's chunk
// size). Whole-cluster lists come in pages so that only one page's bytes
// are held beside the pods decoded so far: one response for 10,000 pods
// is tens of MB, read into a growing buffer and copied once more by the
// protobuf envelope, which made the body, not the pods, most of status's
// memory.
const podPage = 500

// listPods lists every pod matching the field selector, page by page, in
// full (doctor and top read them all).
func listPods(ctx context.Context, cs kubernetes.Interface, fieldSelector string) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	opts := metav1.ListOptions{FieldSelector: fieldSelector, Limit: podPage}
	for {
		l, err := cs.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return nil, podListErr(err)
		}
		pods = append(pods, l.Items...)
		if l.Continue == "" {
			return pods, nil
		}
		opts.Continue = l.Continue
	}
}

// listCountedPods lists the pods matching the field selector without
// their managedFields (a large part of a pod's metadata that nothing here
// reads). With ledgerOnly it keeps only what the ledger reads (status,
// which reads nothing else): the pods it counts (ledger.IsGPUPod), as
// each page is decoded, with their status cut to the phase. admit's view
// needs the others: a protected workload need not use an NVIDIA GPU.
//
// It asks for the next page before it decodes the current one: the
// continue token is read from the page's list metadata, which protobuf
// puts ahead of the items. So the API server encodes page n+1 while this
// process decodes page n, and on a machine running both the two halves
// of the work overlap instead of taking turns.
func listCountedPods(ctx context.Context, rc rest.Interface, fieldSelector string, opt ledger.Options, ledgerOnly bool) ([]corev1.Pod, error) {
	type page struct {
		body []byte
		err  error
	}
	fetch := func(o metav1.ListOptions) <-chan page {
		ch := make(chan page, 1) // the sender never waits, even when the caller gave up
		go func() {
			body, err := rc.Get().Resource("pods").VersionedParams(&o, metav1.ParameterCodec).Do(ctx).Raw()
			ch <- page{body, err}
		}()
		return ch
	}
	opts := metav1.ListOptions{FieldSelector: fieldSelector, Limit: podPage}
	isGPUPod := ledger.GPUPods(opt)
	var pods []corev1.Pod
	for next := fetch(opts); next != nil; {
		p := <-next
		next = nil
		if p.err != nil {
			return nil, podListErr(p.err)
		}
		list, more, err := decodePodPage(p.body, func(cont string) {
			opts.Continue = cont
			next = fetch(opts)
		})
		if err != nil {
			return nil, fmt.Errorf("reading a page of the pod list: %w", err)
		}
		for i := range list.Items {
			pod := &list.Items[i]
			pod.ManagedFields = nil
			if ledgerOnly {
				if !isGPUPod(pod) {
					continue
				}
				pod.Status = corev1.PodStatus{Phase: pod.Status.Phase}
			}
			pods = append(pods, *pod)
		}
		if more != "" && next == nil {
			opts.Continue = more
			next = fetch(opts)
		}
	}
	return pods, nil
}

// decodePodPage decodes a page of a pod list, protobuf or JSON. For
// protobuf it calls ahead with the continue token before decoding the
// items; for JSON, which has no cheap way to it, it returns the token
// (more) for the caller to follow after.
func decodePodPage(body []byte, ahead func(cont string)) (list *corev1.PodList, more string, err error) {
	list = &corev1.PodList{}
	raw, ok, err := protobufObject(body, "PodList")
	if err != nil {
		return nil, "", err
	}
	if !ok {
		if err := json.Unmarshal(body, list); err != nil {
			return nil, "", err
		}
		return list, list.Continue, nil
	}
	meta, err := leadingListMeta(raw)
	if err != nil {
		return nil, "", err
	}
	if meta.Continue != "" {
		ahead(meta.Continue)
	}
	if err := list.Unmarshal(raw); err != nil {
		return nil, "", err
	}
	return list, "", nil
}

// protobufObject unwraps a Kubernetes protobuf body (the "k8s\x00" prefix
// and the runtime.Unknown envelope) holding a kind; ok is false for any
// other encoding (JSON).
func protobufObject(body []byte, kind string) (raw []byte, ok bool, err error) {
	if !bytes.HasPrefix(body, protobufPrefix) {
		return nil, false, nil
	}
	var envelope runtime.Unknown
	if err := envelope.Unmarshal(body[len(protobufPrefix):]); err != nil {
		return nil, false, err
	}
	if envelope.Kind != kind {
		return nil, false, fmt.Errorf("the API server sent a %s %s, not a %s", envelope.APIVersion, envelope.Kind, kind)
	}
	return envelope.Raw, true, nil
}

// leadingListMeta reads field 1 of a list message (every Kubernetes list
// type's metadata) without decoding the items after it.
func leadingListMeta(raw []byte) (metav1.ListMeta, error) {
	var meta metav1.ListMeta
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return meta, protowire.ParseError(n)
		}
		raw = raw[n:]
		if num == 1 && typ == protowire.BytesType {
			b, n := protowire.ConsumeBytes(raw)
			if n < 0 {
				return meta, protowire.ParseError(n)
			}
			return meta, meta.Unmarshal(b)
		}
		n = protowire.ConsumeFieldValue(num, typ, raw)
		if n < 0 {
			return meta, protowire.ParseError(n)
		}
		raw = raw[n:]
	}
	return meta, errors.New("the list has no metadata")
}

// podListErr says what to do about a failed page.
func podListErr(err error) error {
	if apierrors.IsResourceExpired(err) {
		err = fmt.Errorf("%w (the cluster changed too much while it was listed page by page: run the command again)", err)
	}
	return listErr("pods", err)
}
