{{/*
The app.kubernetes.io/name of every object. Fixed on purpose: the
NetworkPolicy the operator renders for each StreamJob lets only pods
labelled app.kubernetes.io/name=eddy-operator (in the release namespace)
reach the processors' admin port, so the name cannot be overridden.
*/}}
{{- define "eddy.name" -}}
eddy-operator
{{- end }}

{{/*
The name of the release's objects: fullnameOverride, else the release name
when it contains the chart name, else <release>-<chart>; at most 63
characters (a DNS label).
*/}}
{{- define "eddy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "eddy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "eddy.labels" -}}
helm.sh/chart: {{ include "eddy.chart" . }}
{{ include "eddy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eddy
{{- end }}

{{/* Labels that select the operator pods (never change: selectors are immutable). */}}
{{- define "eddy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eddy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "eddy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eddy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "eddy.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .appVersion) }}
{{- end }}

{{/* Leader election is on with more than one replica, or when asked for. */}}
{{- define "eddy.leaderElection" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.enabled }}true{{ else }}false{{ end }}
{{- end }}

{{/*
The rules of the operator's (Cluster)Role: exactly the verbs the operator's
code uses. e2e/tests/chart.rs holds the same list; change both together.
*/}}
{{- define "eddy.rules" -}}
- apiGroups: ["eddy.dev"]
  resources: ["streamjobs"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["eddy.dev"]
  resources: ["streamjobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["eddy.dev"]
  resources: ["streamjobs/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Labels of the monitoring objects: the chart's, plus monitoring.labels (for
a Prometheus that selects its PodMonitors and rules by label); the chart's
own labels win a clash.
*/}}
{{- define "eddy.monitoringLabels" -}}
{{- $labels := include "eddy.labels" . | fromYaml }}
{{- toYaml (merge $labels .Values.monitoring.labels) }}
{{- end }}
