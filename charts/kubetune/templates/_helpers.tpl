{{/* Object names: "<release>-kubetune", or the release name when it already says kubetune. */}}
{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetune.fullname" -}}
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

{{- define "kubetune.prometheusName" -}}
{{- printf "%s-prometheus" (include "kubetune.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubetune.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubetune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetune
{{- end }}

{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The URL the operator queries: prometheus.url, else the bundled Prometheus' Service. */}}
{{- define "kubetune.prometheusURL" -}}
{{- if .Values.prometheus.url }}
{{- .Values.prometheus.url }}
{{- else if .Values.prometheus.bundled.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "kubetune.prometheusName" .) .Release.Namespace (int .Values.prometheus.bundled.service.port) }}
{{- else }}
{{- fail "kubetune needs a Prometheus for trial metrics: set prometheus.url, or prometheus.bundled.enabled=true" }}
{{- end }}
{{- end }}

{{/*
What the operator does in a namespace it reconciles; each rule names the code that needs it.
Never Secrets: trial pods that use Secrets get them from the kubelet, not from the operator.
*/}}
{{- define "kubetune.namespacedRules" -}}
# kopf lists and watches TuneExperiments, and patches them for its finalizer
# (kubetune.io/finalizer) and its kubetune.io/* annotations.
- apiGroups: ["kubetune.io"]
  resources: ["tuneexperiments"]
  verbs: ["list", "watch", "patch"]
# Gateway.patch_experiment_status: phase, counts, best trial, conditions.
- apiGroups: ["kubetune.io"]
  resources: ["tuneexperiments/status"]
  verbs: ["patch"]
# Gateway.list_trials / create_trial / get_trial (the get after a 409 on create);
# the operator's watch-fed view of them (a kopf index: list once, then watch).
- apiGroups: ["kubetune.io"]
  resources: ["tunetrials"]
  verbs: ["get", "list", "watch", "create"]
# Gateway.patch_trial_status: state, step, metrics, rungs.
- apiGroups: ["kubetune.io"]
  resources: ["tunetrials/status"]
  verbs: ["patch"]
# Trials and pods carry ownerReferences with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift enables it)
# allows only with update on the owner's finalizers. Custom resources serve no
# such endpoint, so this grants no API call.
- apiGroups: ["kubetune.io"]
  resources: ["tuneexperiments/finalizers", "tunetrials/finalizers"]
  verbs: ["update"]
# Gateway.list_pods / create_pod / delete_pod (pruned trials); the watch-fed view.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "delete"]
# kopf.event posts core v1 Events (create only, never patches them).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Multi-worker trials (spec.workers): Gateway.list_jobs / create_job / delete_job (an
# Indexed Job per attempt), the operator's watch-fed view of them, and create_service (the
# headless Service its workers resolve under).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create"]
{{- end }}

{{/* Cluster-scoped reads kopf makes whatever the namespaces it serves. */}}
{{- define "kubetune.clusterRules" -}}
# kopf watches CRDs to notice kubetune.io versions added or removed while it runs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# Whole-trial admission of multi-worker trials (Gateway.capacity_objects, read-only): each
# node's allocatable nvidia.com/gpu, what the non-terminated pods bound to it request, and
# worker Jobs whose pods are not made yet, in every namespace.
- apiGroups: [""]
  resources: ["nodes", "pods"]
  verbs: ["list"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list"]
{{- if .Values.watchNamespaces }}
# kopf lists and watches namespaces to start serving a listed one created after it.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
