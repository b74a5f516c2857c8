{{/*
What every Livecart container and pod shares, whether it serves or migrates.
Call with (dict "root" $ "name" "chat" "svc" <its entry in .Values.services> "database" true|false).
*/}}

{{/* The container's environment: the LIVECART_* settings of livecart_core.settings. */}}
{{- define "livecart.env" -}}
{{- $v := .root.Values -}}
- name: LIVECART_HTTP_PORT
  value: {{ $v.ports.http | quote }}
- name: LIVECART_GRPC_PORT
  value: {{ $v.ports.grpc | quote }}
- name: LIVECART_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required" $v.kafka.bootstrap | quote }}
- name: LIVECART_LOG_FORMAT
  value: json
- name: LIVECART_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: LIVECART_DRAIN_S
  value: {{ $v.drainSeconds | default 0 | quote }}
{{- if .database }}
- name: LIVECART_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "livecart.databaseSecretName" .root }}
      key: {{ $v.database.existingSecretKey | default "url" }}
{{- end }}
- name: LIVECART_AUTH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ required "auth.existingSecret is required (one secret for every region)" $v.auth.existingSecret }}
      key: {{ $v.auth.existingSecretKey | default "secret" }}
{{- with $v.otlpEndpoint }}
- name: LIVECART_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with $v.env }}
{{ toYaml . }}
{{- end }}
{{- range .svc.extraPorts }}
- name: {{ .env }}
  value: {{ .port | quote }}
{{- end }}
{{- if and (eq .name "ingest") (hasKey $v.services "relay") }}
{{- /* Ingest pipes each room to every relay pod of its edge (the headless Service). */}}
- name: LIVECART_RELAY_GRPC_ADDRESS
  value: "{{ include "livecart.fullname" .root }}-relay-pods:{{ $v.ports.grpc }}"
{{- end }}
{{- if and (eq .name "chat") (hasKey $v.services "commerce") }}
{{- /* Chat forwards the buy button to the commerce pods, round robin over all of them. */}}
- name: LIVECART_COMMERCE_GRPC_ADDRESS
  value: "dns:///{{ include "livecart.fullname" .root }}-commerce-pods:{{ $v.ports.grpc }}"
{{- end }}
{{- /* UDP port ranges ({min, max}) ICE host candidates and relay pipes bind in. */}}
{{- with .svc.icePorts }}
- name: LIVECART_ICE_PORT_MIN
  value: {{ .min | quote }}
- name: LIVECART_ICE_PORT_MAX
  value: {{ .max | quote }}
{{- end }}
{{- with .svc.pipePorts }}
- name: LIVECART_PIPE_PORT_MIN
  value: {{ .min | quote }}
- name: LIVECART_PIPE_PORT_MAX
  value: {{ .max | quote }}
{{- end }}
{{- if eq .name "relay" }}
{{- /* Ingest's pipes reach the relay on its pod address. */}}
- name: LIVECART_PIPE_HOST
  valueFrom:
    fieldRef: {fieldPath: status.podIP}
{{- end }}
{{- with .svc.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image, security context and environment of a container running `python -m livecart_<name>`. */}}
{{- define "livecart.containerBase" -}}
image: {{ include "livecart.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
{{- with .root.Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
env:
  {{- include "livecart.env" . | nindent 2 }}
{{- end -}}

{{/* Pod-level fields: pull secrets, service account, security context and placement. */}}
{{- define "livecart.podBase" -}}
{{- $v := .root.Values -}}
{{- /* Draining, then up to ~25 s to finish what is in flight (gRPC grace, sessions). */}}
terminationGracePeriodSeconds: {{ add ($v.drainSeconds | default 0) 25 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with $v.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .svc.hostNetwork }}
{{- /* WebRTC media on the node's own addresses and ephemeral UDP ports. */}}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
