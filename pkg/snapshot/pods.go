package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

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

// pageBuffers hold the answers to list requests, read whole before
// decoding: reused, a buffer grows to a page's size once instead of on
// every page.
var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody sends req and reads the whole answer into a buffer from
// pageBuffers; put it back once decoded. An error status comes back as
// client-go's error, as from Do.
func readBody(ctx context.Context, req *rest.Request) (*bytes.Buffer, error) {
	body := pageBuffers.Get().(*bytes.Buffer)
	body.Reset()
	r, err := req.Stream(ctx)
	if err != nil {
		return body, err
	}
	defer r.Close()
	_, err = body.ReadFrom(r)
	return body, err
}

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
		body *bytes.Buffer
		err  error
	}
	fetch := func(o metav1.ListOptions) <-chan page {
		ch := make(chan page, 1) // the sender never waits, even when the caller gave up
		go func() {
			body, err := readBody(ctx, rc.Get().Resource("pods").VersionedParams(&o, metav1.ParameterCodec))
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
		list, more, err := decodePodPage(p.body.Bytes(), func(cont string) {
			opts.Continue = cont
			next = fetch(opts)
		})
		pageBuffers.Put(p.body) // the decoded pods copied what they keep
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
// and the runtime.Unknown envelope) holding a kind, and returns the
// object's bytes within body (runtime.Unknown.Unmarshal would copy them);
// ok is false for any other encoding (JSON).
func protobufObject(body []byte, kind string) (raw []byte, ok bool, err error) {
	if !bytes.HasPrefix(body, protobufPrefix) {
		return nil, false, nil
	}
	var typeMeta runtime.TypeMeta
	var encoding string
	err = eachField(body[len(protobufPrefix):], func(num protowire.Number, value []byte) error {
		switch num {
		case 1: // typeMeta
			return typeMeta.Unmarshal(value)
		case 2: // raw
			raw = value
		case 3: // contentEncoding
			encoding = string(value)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("reading the protobuf envelope: %w", err)
	case typeMeta.Kind != kind:
		return nil, false, fmt.Errorf("the API server sent a %s %s, not a %s", typeMeta.APIVersion, typeMeta.Kind, kind)
	case encoding != "":
		return nil, false, fmt.Errorf("the API server sent the %s with content encoding %q, which gpuslice does not read", kind, encoding)
	}
	return raw, true, nil
}

// eachField calls fn with each length-delimited field of a protobuf
// message (the others are skipped); fn's error stops the walk.
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			value, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if err := fn(num, value); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// leadingListMeta reads field 1 of a list message (every Kubernetes list
// type's metadata) without decoding the items after it.
func leadingListMeta(raw []byte) (metav1.ListMeta, error) {
	var meta metav1.ListMeta
	errFound := errors.New("found")
	err := eachField(raw, func(num protowire.Number, value []byte) error {
		if num != 1 {
			return nil
		}
		if err := meta.Unmarshal(value); err != nil {
			return err
		}
		return errFound
	})
	switch err {
	case errFound:
		return meta, nil
	case nil:
		return meta, errors.New("the list has no metadata")
	}
	return meta, err
}

// podListErr says what to do about a failed page.
func podListErr(err error) error {
	if apierrors.IsResourceExpired(err) {
		err = fmt.Errorf("%w (the cluster changed too much while it was listed page by page: run the command again)", err)
	}
	return listErr("pods", err)
}
