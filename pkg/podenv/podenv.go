// Package podenv resolves a container's environment variable from its pod
// spec the way the kubelet does: envFrom sources in order, then env
// entries, the later definition winning. ConfigMaps come from the caller;
// Secrets, field and resource references are noted but not read.
//
// It is pure logic: it reads no cluster object itself.
package podenv

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Kind is how a container refers to a variable's value.
type Kind string

// The kinds of Source.
const (
	// Env is an env entry with a value.
	Env Kind = "env"
	// ConfigMapKeyRef is an env entry from valueFrom.configMapKeyRef.
	ConfigMapKeyRef Kind = "configMapKeyRef"
	// EnvFrom is an envFrom configMapRef.
	EnvFrom Kind = "envFrom"
	// SecretKeyRef is an env entry from valueFrom.secretKeyRef.
	SecretKeyRef Kind = "secretKeyRef"
	// EnvFromSecret is an envFrom secretRef.
	EnvFromSecret Kind = "envFromSecret"
	// FieldRef is an env entry from any other valueFrom: a fieldRef or a
	// resourceFieldRef.
	FieldRef Kind = "fieldRef"
)

// State is what a source gives the variable.
type State int

// The states of Source.
const (
	// Read sources set the variable; Source.Value is what they set.
	Read State = iota
	// Unread sources may set it, but from what gpuslice does not read: a
	// Secret, a field or resource reference.
	Unread
	// NoConfigMap sources name a ConfigMap the caller did not find.
	NoConfigMap
	// NoKey sources name a ConfigMap without the key.
	NoKey
	// NoPrefix is an envFrom whose prefix the variable's name does not
	// start with: it cannot set it.
	NoPrefix
)

// Source is one place in a container that refers to the variable: an
// envFrom source, or an env entry of that name.
type Source struct {
	Kind  Kind
	State State
	// Value is the variable's value when State is Read, else "".
	Value string
	// Container is the container's name.
	Container string
	// Object is the ConfigMap or Secret named, without namespace; "" for
	// Env and FieldRef.
	Object string
	// Key is where the value is: the ConfigMap or Secret key (for envFrom,
	// the variable's name less Prefix; "" when NoPrefix), or for Env the
	// variable's name.
	Key string
	// Prefix is an envFrom source's prefix.
	Prefix string
	// From says where the value comes from as gpuslice writes it:
	// "env of container vllm", "configmap ai-dev/vllm-config".
	From string
}

// Sources are the places a container refers to a variable, in the order
// the kubelet applies them.
type Sources []Source

// ConfigMaps finds a ConfigMap of the pod's namespace by name; nil when it
// was not found (or not read).
type ConfigMaps func(name string) *corev1.ConfigMap

// Resolve lists every envFrom source of container c and every env entry
// called name, in the order the kubelet applies them, with what each gives
// the variable. namespace is the pod's: it qualifies Source.From.
func Resolve(namespace string, c *corev1.Container, configMaps ConfigMaps, name string) Sources {
	fromConfigMap := func(s Source) Source {
		cm := configMaps(s.Object)
		if cm == nil {
			s.State = NoConfigMap
			return s
		}
		v, ok := cm.Data[s.Key]
		if !ok {
			s.State = NoKey
			return s
		}
		s.State, s.Value = Read, v
		return s
	}
	var out Sources
	for _, ef := range c.EnvFrom {
		s := Source{Container: c.Name, Prefix: ef.Prefix}
		switch {
		case ef.ConfigMapRef != nil:
			s.Kind, s.Object, s.From = EnvFrom, ef.ConfigMapRef.Name, "configmap "+namespace+"/"+ef.ConfigMapRef.Name
		case ef.SecretRef != nil:
			s.Kind, s.Object, s.From, s.State = EnvFromSecret, ef.SecretRef.Name, "secret "+namespace+"/"+ef.SecretRef.Name, Unread
		default:
			continue
		}
		key, ok := strings.CutPrefix(name, ef.Prefix)
		switch {
		case !ok:
			s.State = NoPrefix
		case s.Kind == EnvFrom:
			s.Key = key
			s = fromConfigMap(s)
		default:
			s.Key = key
		}
		out = append(out, s)
	}
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		s := Source{Container: c.Name}
		switch {
		case e.ValueFrom == nil:
			s.Kind, s.State, s.Value, s.Key, s.From = Env, Read, e.Value, name, "env of container "+c.Name
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			s.Kind, s.Object, s.Key, s.From = ConfigMapKeyRef, ref.Name, ref.Key, "configmap "+namespace+"/"+ref.Name
			s = fromConfigMap(s)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s.Kind, s.State, s.Object, s.Key, s.From = SecretKeyRef, Unread, ref.Name, ref.Key, "secret "+namespace+"/"+ref.Name
		default:
			s.Kind, s.State, s.From = FieldRef, Unread, "field reference of container "+c.Name
		}
		out = append(out, s)
	}
	return out
}

// Value is the last source that sets the variable to a value gpuslice
// read. Sources it could not read are passed over, so a later Secret,
// field reference or missing ConfigMap key does not hide an earlier value
// (as the kubelet does for an optional reference it cannot resolve; a
// Secret that holds the variable would win there). A caller that must know
// which source the kubelet applies last walks Sources itself.
func (s Sources) Value() (Source, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].State == Read {
			return s[i], true
		}
	}
	return Source{}, false
}

// Secrets are the Secrets that may set the variable, which gpuslice does
// not read: envFrom secretRefs whose prefix fits, and secretKeyRefs.
func (s Sources) Secrets() []string {
	var out []string
	for _, src := range s {
		if (src.Kind == SecretKeyRef || src.Kind == EnvFromSecret) && src.State == Unread {
			out = append(out, src.Object)
		}
	}
	return out
}

// Lookup resolves name in container c: Resolve(...).Value().
func Lookup(namespace string, c *corev1.Container, configMaps ConfigMaps, name string) (Source, bool) {
	return Resolve(namespace, c, configMaps, name).Value()
}

// InList finds ConfigMaps of namespace in a list, the first of a name
// winning.
func InList(namespace string, list []corev1.ConfigMap) ConfigMaps {
	return func(name string) *corev1.ConfigMap {
		for i := range list {
			if list[i].Namespace == namespace && list[i].Name == name {
				return &list[i]
			}
		}
		return nil
	}
}
