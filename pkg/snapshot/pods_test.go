package snapshot

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// protobufBody is a list as the API server sends it in protobuf: the
// "k8s\x00" prefix and the runtime.Unknown envelope around the list.
func protobufBody(t *testing.T, list *corev1.PodList) []byte {
	t.Helper()
	raw, err := list.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Raw: raw}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(protobufPrefix), b...)
}

func TestDecodePodPage(t *testing.T) {
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "vllm", Namespace: "ai-dev"}, Spec: corev1.PodSpec{NodeName: "homelabai"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plex", Namespace: "media"}},
	}
	jsonBody := func(l *corev1.PodList) []byte {
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name      string
		body      func(*corev1.PodList) []byte
		cont      string
		wantAhead string // the token handed over before the items are decoded
		wantMore  string // the token left for after
	}{
		{name: "protobuf, more pages", body: func(l *corev1.PodList) []byte { return protobufBody(t, l) }, cont: "page-2", wantAhead: "page-2"},
		{name: "protobuf, last page", body: func(l *corev1.PodList) []byte { return protobufBody(t, l) }},
		{name: "JSON, more pages", body: jsonBody, cont: "page-2", wantMore: "page-2"},
		{name: "JSON, last page", body: jsonBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &corev1.PodList{ListMeta: metav1.ListMeta{Continue: tc.cont, ResourceVersion: "42"}, Items: pods}
			var ahead string
			list, more, err := decodePodPage(tc.body(in), func(c string) { ahead = c })
			if err != nil {
				t.Fatal(err)
			}
			if ahead != tc.wantAhead || more != tc.wantMore {
				t.Errorf("continue token ahead %q, after %q; want %q, %q", ahead, more, tc.wantAhead, tc.wantMore)
			}
			if len(list.Items) != 2 || list.Items[0].Name != "vllm" || list.Items[0].Spec.NodeName != "homelabai" || list.Items[1].Namespace != "media" {
				t.Errorf("items %+v, want vllm and plex as sent", list.Items)
			}
		})
	}
}

func TestDecodePodPageRefusesOtherKinds(t *testing.T) {
	env := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "v1", Kind: "Status"}, Raw: []byte{}}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := decodePodPage(append(bytes.Clone(protobufPrefix), b...), func(string) {}); err == nil {
		t.Error("a Status decoded as a PodList")
	}
	if _, _, err := decodePodPage(append(bytes.Clone(protobufPrefix), 0xff), func(string) {}); err == nil {
		t.Error("a truncated envelope decoded")
	}
}
