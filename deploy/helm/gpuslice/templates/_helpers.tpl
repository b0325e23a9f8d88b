{{/* Name of the chart, or nameOverride. */}}
{{- define "gpuslice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object's name: the release name, unless it already says gpuslice. */}}
{{- define "gpuslice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels of every object. deploy/manifests is rendered with Release.Service
"kubectl", so the plain manifests claim no Helm ownership.
*/}}
{{- define "gpuslice.labels" -}}
{{ if eq .Release.Service "Helm" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ end -}}
app.kubernetes.io/name: {{ include "gpuslice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpuslice
{{- end }}

{{/*
Selector labels of one component; call with (dict "ctx" $ "component" "webhook").
`gpuslice top` finds the agent by app.kubernetes.io/component=agent, and
`gpuslice doctor` the webhook by app.kubernetes.io/name=gpuslice.
*/}}
{{- define "gpuslice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpuslice.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "gpuslice.componentLabels" -}}
{{ include "gpuslice.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gpuslice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gpuslice.webhook.serviceAccountName" -}}
{{- printf "%s-webhook" (include "gpuslice.fullname" .) }}
{{- end }}

{{- define "gpuslice.agent.serviceAccountName" -}}
{{- printf "%s-agent" (include "gpuslice.fullname" .) }}
{{- end }}

{{- define "gpuslice.arbiter.serviceAccountName" -}}
{{- printf "%s-arbiter" (include "gpuslice.fullname" .) }}
{{- end }}

{{/* The arbiter's leader-election Lease (--leader-elect-name). */}}
{{- define "gpuslice.arbiter.leaseName" -}}
{{- printf "%s-arbiter" (include "gpuslice.fullname" .) }}
{{- end }}

{{/* The arbiter's journal ConfigMap (--journal-name): what it holds preempted, and its history. */}}
{{- define "gpuslice.arbiter.journalName" -}}
{{- printf "%s-arbiter-journal" (include "gpuslice.fullname" .) }}
{{- end }}

{{/* Where the Plex token Secret is mounted, and the file passed as --plex-token-file. */}}
{{- define "gpuslice.arbiter.plexTokenDir" -}}
/var/run/secrets/plex
{{- end }}

{{/* The admission gate's journal ConfigMap (the webhook's --journal-name): its denials and break-glass admissions. */}}
{{- define "gpuslice.webhook.gateJournalName" -}}
{{- printf "%s-gate-journal" (include "gpuslice.fullname" .) }}
{{- end }}

{{/* cert-manager's Certificate for the webhook, and the Secret it writes. */}}
{{- define "gpuslice.webhook.certificateName" -}}
{{- printf "%s-webhook" (include "gpuslice.fullname" .) }}
{{- end }}

{{- define "gpuslice.webhook.tlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "gpuslice.fullname" .) }}
{{- end }}

{{- define "gpuslice.webhook.configMapName" -}}
{{- printf "%s-webhook-config" (include "gpuslice.fullname" .) }}
{{- end }}

{{/*
The injector config written to the ConfigMap: the values, with apiVersion
and kind added when they are missing.
*/}}
{{- define "gpuslice.webhook.config" -}}
{{- $c := deepCopy .Values.webhook.config }}
{{- $_ := set $c "apiVersion" (default "gpuslice.io/v1alpha1" $c.apiVersion) }}
{{- $_ = set $c "kind" (default "InjectorConfig" $c.kind) }}
{{- with .Values.webhook.profileNamespaces }}
{{- if $c.profileNamespaces }}
{{- fail "set the namespaces of profiles in webhook.profileNamespaces or in webhook.config.profileNamespaces, not both" }}
{{- end }}
{{- $_ = set $c "profileNamespaces" . }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
"true" when the webhook gets a config file: webhook.config or
webhook.profileNamespaces is set; "" otherwise.
*/}}
{{- define "gpuslice.webhook.hasConfig" -}}
{{- if or .Values.webhook.config .Values.webhook.profileNamespaces }}true{{ end }}
{{- end }}

{{/*
Namespaces whose pods are never sent to the webhook, as
registration.Build computes them: the config's excludedNamespaces when it
names some, else kube-system and the release namespace; sorted, unique.
*/}}
{{- define "gpuslice.webhook.excludedNamespaces" -}}
{{- $excluded := list "kube-system" .Release.Namespace }}
{{- with .Values.webhook.config.excludedNamespaces }}
{{- $excluded = . }}
{{- end }}
{{- toJson ($excluded | compact | uniq | sortAlpha) }}
{{- end }}

{{/*
The restricted securityContext every container runs with, as the user and
group given (the image's 65532, or the agent's own).
*/}}
{{- define "gpuslice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* GOMEMLIMIT from the container's own memory limit: the Go runtime reads it
at start and collects harder as the heap nears the limit, instead of
growing past it into an OOM kill. */}}
{{- define "gpuslice.goMemLimit" -}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end }}

{{/*
The agent's namespace: agent.namespace, else the release's. The agent alone
needs the host's PID namespace (or /proc); in a namespace of its own, the
release namespace can enforce Pod Security "restricted".
*/}}
{{- define "gpuslice.agent.namespace" -}}
{{- default .Release.Namespace .Values.agent.namespace }}
{{- end }}

{{/*
The arbiter's rule for --agents, in the agents' namespace: get on the pods
proxy, through which it scrapes each agent's /metrics (and /readyz when
NVML is down), as gpuslice top does (signals.Agents).
*/}}
{{- define "gpuslice.arbiter.agentsRule" -}}
# get: --agents scrapes each agent's /metrics (and /readyz when NVML is
# down) through the API server's pods proxy (signals.Agents, as gpuslice
# top does); only in the agents' namespace.
- apiGroups: [""]
  resources: [pods/proxy]
  verbs: [get]
{{- end }}
