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
