package podenv

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const gmu = "GPU_MEMORY_UTILIZATION"

func value(v string) corev1.EnvVar { return corev1.EnvVar{Name: gmu, Value: v} }

func keyRef(cm, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: gmu, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Key: key}}}
}

func secretRef(secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: gmu, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
}

func fromConfigMap(cm, prefix string) corev1.EnvFromSource {
	return corev1.EnvFromSource{Prefix: prefix, ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}
}

func fromSecret(secret, prefix string) corev1.EnvFromSource {
	return corev1.EnvFromSource{Prefix: prefix, SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}
}

func configMap(namespace, name string, data map[string]string) corev1.ConfigMap {
	return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Data: data}
}

func TestResolve(t *testing.T) {
	cms := InList("ai-dev", []corev1.ConfigMap{
		configMap("ai-dev", "vllm-config", map[string]string{gmu: "0.70", "MODEL": "x"}),
		configMap("ai-dev", "override", map[string]string{gmu: "0.5"}),
		configMap("ai-dev", "gpu", map[string]string{"MEMORY_UTILIZATION": "0.75"}),
		configMap("ai-dev", "shared", map[string]string{"vllm-mem": "0.25"}),
		configMap("ai-dev", "no-gmu", map[string]string{"MODEL": "x"}),
		configMap("other", "elsewhere", map[string]string{gmu: "0.9"}),
	})
	read := func(kind Kind, object, key, v, from string) Source {
		return Source{Kind: kind, State: Read, Value: v, Container: "vllm", Object: object, Key: key, From: from}
	}
	seed := read(EnvFrom, "vllm-config", gmu, "0.70", "configmap ai-dev/vllm-config")
	envValue := func(v string) Source { return read(Env, "", gmu, v, "env of container vllm") }

	tests := []struct {
		name    string
		envFrom []corev1.EnvFromSource
		env     []corev1.EnvVar
		want    Sources
		wins    int // 1-based place in want of the source Value returns; 0: none
		secrets []string
	}{{
		name: "nothing",
		env:  []corev1.EnvVar{{Name: "OTHER", Value: "1"}},
	}, {
		name: "env value",
		env:  []corev1.EnvVar{value("0.9")},
		want: Sources{envValue("0.9")},
		wins: 1,
	}, {
		name: "empty env value is set",
		env:  []corev1.EnvVar{value("")},
		want: Sources{envValue("")},
		wins: 1,
	}, {
		name:    "envFrom ConfigMap (the seed's vllm-config)",
		envFrom: []corev1.EnvFromSource{fromConfigMap("vllm-config", "")},
		want:    Sources{seed},
		wins:    1,
	}, {
		name:    "envFrom prefix",
		envFrom: []corev1.EnvFromSource{fromConfigMap("gpu", "GPU_")},
		want:    Sources{{Kind: EnvFrom, State: Read, Value: "0.75", Container: "vllm", Object: "gpu", Key: "MEMORY_UTILIZATION", Prefix: "GPU_", From: "configmap ai-dev/gpu"}},
		wins:    1,
	}, {
		name:    "envFrom prefix the name lacks",
		envFrom: []corev1.EnvFromSource{fromConfigMap("gpu", "VLLM_")},
		want:    Sources{{Kind: EnvFrom, State: NoPrefix, Container: "vllm", Object: "gpu", Prefix: "VLLM_", From: "configmap ai-dev/gpu"}},
	}, {
		name:    "envFrom ConfigMap not found",
		envFrom: []corev1.EnvFromSource{fromConfigMap("gone", "")},
		want:    Sources{{Kind: EnvFrom, State: NoConfigMap, Container: "vllm", Object: "gone", Key: gmu, From: "configmap ai-dev/gone"}},
	}, {
		name:    "envFrom ConfigMap of another namespace is not found",
		envFrom: []corev1.EnvFromSource{fromConfigMap("elsewhere", "")},
		want:    Sources{{Kind: EnvFrom, State: NoConfigMap, Container: "vllm", Object: "elsewhere", Key: gmu, From: "configmap ai-dev/elsewhere"}},
	}, {
		name:    "envFrom ConfigMap without the key",
		envFrom: []corev1.EnvFromSource{fromConfigMap("no-gmu", "")},
		want:    Sources{{Kind: EnvFrom, State: NoKey, Container: "vllm", Object: "no-gmu", Key: gmu, From: "configmap ai-dev/no-gmu"}},
	}, {
		name:    "later envFrom wins",
		envFrom: []corev1.EnvFromSource{fromConfigMap("vllm-config", ""), fromConfigMap("override", "")},
		want:    Sources{seed, read(EnvFrom, "override", gmu, "0.5", "configmap ai-dev/override")},
		wins:    2,
	}, {
		name:    "env overrides envFrom, as in the kubelet",
		envFrom: []corev1.EnvFromSource{fromConfigMap("vllm-config", "")},
		env:     []corev1.EnvVar{value("0.8")},
		want:    Sources{seed, envValue("0.8")},
		wins:    2,
	}, {
		name: "last env entry wins",
		env:  []corev1.EnvVar{value("0.9"), value("0.8")},
		want: Sources{envValue("0.9"), envValue("0.8")},
		wins: 2,
	}, {
		name: "configMapKeyRef under another key",
		env:  []corev1.EnvVar{keyRef("shared", "vllm-mem")},
		want: Sources{read(ConfigMapKeyRef, "shared", "vllm-mem", "0.25", "configmap ai-dev/shared")},
		wins: 1,
	}, {
		name:    "configMapKeyRef to a missing ConfigMap does not hide envFrom",
		envFrom: []corev1.EnvFromSource{fromConfigMap("vllm-config", "")},
		env:     []corev1.EnvVar{keyRef("gone", gmu)},
		want:    Sources{seed, {Kind: ConfigMapKeyRef, State: NoConfigMap, Container: "vllm", Object: "gone", Key: gmu, From: "configmap ai-dev/gone"}},
		wins:    1,
	}, {
		name: "configMapKeyRef to a missing key",
		env:  []corev1.EnvVar{keyRef("no-gmu", gmu)},
		want: Sources{{Kind: ConfigMapKeyRef, State: NoKey, Container: "vllm", Object: "no-gmu", Key: gmu, From: "configmap ai-dev/no-gmu"}},
	}, {
		name:    "envFrom Secret: noted, not read",
		envFrom: []corev1.EnvFromSource{fromSecret("hf-token", "")},
		want:    Sources{{Kind: EnvFromSecret, State: Unread, Container: "vllm", Object: "hf-token", Key: gmu, From: "secret ai-dev/hf-token"}},
		secrets: []string{"hf-token"},
	}, {
		name:    "envFrom Secret whose prefix the name lacks cannot hold it",
		envFrom: []corev1.EnvFromSource{fromSecret("hf-token", "HF_")},
		want:    Sources{{Kind: EnvFromSecret, State: NoPrefix, Container: "vllm", Object: "hf-token", Prefix: "HF_", From: "secret ai-dev/hf-token"}},
	}, {
		name:    "secretKeyRef: noted, does not hide envFrom",
		envFrom: []corev1.EnvFromSource{fromConfigMap("vllm-config", "")},
		env:     []corev1.EnvVar{secretRef("s", "k")},
		want:    Sources{seed, {Kind: SecretKeyRef, State: Unread, Container: "vllm", Object: "s", Key: "k", From: "secret ai-dev/s"}},
		wins:    1,
		secrets: []string{"s"},
	}, {
		name:    "Secrets in kubelet order",
		envFrom: []corev1.EnvFromSource{fromSecret("a", ""), fromSecret("b", "X_")},
		env:     []corev1.EnvVar{secretRef("c", "k")},
		want: Sources{
			{Kind: EnvFromSecret, State: Unread, Container: "vllm", Object: "a", Key: gmu, From: "secret ai-dev/a"},
			{Kind: EnvFromSecret, State: NoPrefix, Container: "vllm", Object: "b", Prefix: "X_", From: "secret ai-dev/b"},
			{Kind: SecretKeyRef, State: Unread, Container: "vllm", Object: "c", Key: "k", From: "secret ai-dev/c"},
		},
		secrets: []string{"a", "c"},
	}, {
		name: "field reference",
		env:  []corev1.EnvVar{{Name: gmu, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
		want: Sources{{Kind: FieldRef, State: Unread, Container: "vllm", From: "field reference of container vllm"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &corev1.Container{Name: "vllm", EnvFrom: tt.envFrom, Env: tt.env}
			got := Resolve("ai-dev", c, cms, gmu)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Resolve:\n got  %+v\n want %+v", got, tt.want)
			}
			v, ok := got.Value()
			switch {
			case tt.wins == 0 && ok:
				t.Errorf("Value() = %+v, want none", v)
			case tt.wins > 0 && (!ok || v != tt.want[tt.wins-1]):
				t.Errorf("Value() = %+v, %v, want %+v", v, ok, tt.want[tt.wins-1])
			}
			if lv, lok := Lookup("ai-dev", c, cms, gmu); lv != v || lok != ok {
				t.Errorf("Lookup() = %+v, %v, Value() %+v, %v", lv, lok, v, ok)
			}
			if s := got.Secrets(); !slices.Equal(s, tt.secrets) {
				t.Errorf("Secrets() = %v, want %v", s, tt.secrets)
			}
		})
	}
}

func TestInList(t *testing.T) {
	list := []corev1.ConfigMap{
		configMap("other", "cfg", map[string]string{"K": "other"}),
		configMap("ai-dev", "cfg", map[string]string{"K": "first"}),
		configMap("ai-dev", "cfg", map[string]string{"K": "second"}),
	}
	find := InList("ai-dev", list)
	if cm := find("cfg"); cm == nil || cm.Data["K"] != "first" {
		t.Errorf("cfg: %+v, want the first of namespace ai-dev", cm)
	}
	if cm := find("gone"); cm != nil {
		t.Errorf("gone: %+v", cm)
	}
}
