{{/*
Names and labels. Every object is "<fullname>-<service>"; fullname is the release name, or
"<release>-<chart>" when the release name does not already say which chart it is.
*/}}
{{- define "livecart.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one service. Call with (dict "root" $ "name" "chat"). */}}
{{- define "livecart.selectorLabels" -}}
app.kubernetes.io/name: livecart
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* All labels of one service's objects. Call with (dict "root" $ "name" "chat"). */}}
{{- define "livecart.labels" -}}
{{ include "livecart.selectorLabels" . }}
app.kubernetes.io/part-of: livecart
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.region }}
livecart.io/region: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "livecart.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "livecart.databaseSecretName" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "livecart.fullname" .)) -}}
{{- end -}}
