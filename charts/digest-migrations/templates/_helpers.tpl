{{/* The base name: resources are <fullname>-reconciler, the Service is <fullname>. */}}
{{- define "digest-migrations.fullname" -}}
{{- default "digest-migrations" .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "digest-migrations.reconciler" -}}
{{- printf "%s-reconciler" (include "digest-migrations.fullname" .) -}}
{{- end -}}

{{/* Selector labels: the ones reconciler/deploy uses, so the two installs select the same pods. */}}
{{- define "digest-migrations.selectorLabels" -}}
app.kubernetes.io/name: {{ include "digest-migrations.reconciler" . }}
{{- end -}}

{{- define "digest-migrations.labels" -}}
{{ include "digest-migrations.selectorLabels" . }}
{{ include "digest-migrations.commonLabels" . }}
{{- end -}}

{{/* Labels of everything the chart renders, except the name. */}}
{{- define "digest-migrations.commonLabels" -}}
app.kubernetes.io/part-of: digest-migrations
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "digest-migrations.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}
{{- end -}}

{{- /*
The rules in a namespace: Migrators, the pods, Jobs and owners of their gated pods, Events.
*/ -}}
{{- define "digest-migrations.namespacedRules" -}}
# Migrators: watched; status written through the status subresource.
- apiGroups: ["migrations.coderanger.net"]
  resources: ["migrators"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["migrations.coderanger.net"]
  resources: ["migrators/status"]
  verbs: ["update", "patch"]
- apiGroups: ["migrations.coderanger.net"]
  resources: ["migrators/finalizers"]
  verbs: ["update"]
# Pods: watched (gated pods, probe pods, Job pods); gated pods get their image pinned (patch);
# probe pods are created and removed.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
# Migration Jobs: one per (Migrator, digest), removed when stale.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Owners of gated pods, read from caches for the pod template and revision order.
- apiGroups: ["apps"]
  resources: ["replicasets", "deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "watch"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["list", "watch"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["list", "watch"]
# Events on Migrators (migration started/succeeded/failed, probe failures).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{- define "digest-migrations.tokenReviewRule" -}}
# Waiter authentication: a waiter's token is checked by the API server (TokenReview); nothing is read.
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
{{- end -}}

{{- define "digest-migrations.subject" -}}
subjects:
  - kind: ServiceAccount
    name: {{ include "digest-migrations.reconciler" . }}
    namespace: {{ .Release.Namespace }}
{{- end -}}
