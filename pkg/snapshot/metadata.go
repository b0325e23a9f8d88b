package snapshot

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// partialListTypes asks the API server for a PartialObjectMetadataList
// (each object's metadata, nothing else), protobuf first, as client-go's
// metadata client does.
const partialListTypes = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

// protobufPrefix starts every Kubernetes protobuf body (apimachinery's
// serializer/protobuf, which keeps it private).
var protobufPrefix = []byte("k8s\x00")

// listOwners lists resource in every namespace, metadata only, through rc
// (the clientset's client for the resource's group, so callers keep
// passing a kubernetes.Interface), and wraps each object's metadata as a T.
func listOwners[T any](ctx context.Context, rc rest.Interface, resource string, wrap func(metav1.ObjectMeta) T) ([]T, error) {
	body, err := readBody(ctx, rc.Get().Resource(resource).SetHeader("Accept", partialListTypes))
	defer pageBuffers.Put(body)
	if err != nil {
		return nil, listErr(resource, err)
	}
	var list metav1.PartialObjectMetadataList
	if err := decodePartialList(body.Bytes(), &list); err != nil {
		return nil, fmt.Errorf("reading the list of %s (metadata only): %w", resource, err)
	}
	out := make([]T, len(list.Items))
	for i := range list.Items {
		out[i] = wrap(list.Items[i].ObjectMeta)
	}
	return out, nil
}

// decodePartialList reads either encoding partialListTypes allows.
func decodePartialList(body []byte, list *metav1.PartialObjectMetadataList) error {
	raw, ok, err := protobufObject(body, "PartialObjectMetadataList")
	switch {
	case err != nil:
		return err
	case !ok:
		return json.Unmarshal(body, list)
	}
	return list.Unmarshal(raw)
}
