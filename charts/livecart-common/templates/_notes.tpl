{{/* One line per enabled service: where its HTTP and gRPC ports answer inside the cluster. */}}
{{- define "livecart.endpoints" -}}
{{- range $name, $svc := .Values.services }}
{{- if $svc.enabled }}
{{- $host := printf "%s-%s" (include "livecart.fullname" $) $name }}
  {{ printf "%-10s" $name }} http://{{ $host }}:{{ $.Values.ports.http }}  grpc {{ $host }}:{{ $.Values.ports.grpc }}
{{- end }}
{{- end }}
{{- end -}}
