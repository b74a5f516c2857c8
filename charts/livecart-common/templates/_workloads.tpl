{{/*
One Deployment and one Service per enabled entry of .Values.services, running
`python -m livecart_<name>`. Every pod serves HTTP and gRPC on the same two ports (.Values.ports),
so the Services are alike; a service with a listener of its own (chat's viewer WebSocket) names
it in `extraPorts` ({name, port, env}: the setting that tells the service its port).
Call with (dict "root" $ "database" true|false): whether the services read LIVECART_DATABASE_URL.
*/}}
{{- define "livecart.workloads" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- range $name, $svc := $v.services }}
{{- if $svc.enabled }}
{{- $ctx := dict "root" $root "name" $name "svc" $svc "database" $.database }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "livecart.fullname" $root }}-{{ $name }}
  labels:
    {{- include "livecart.labels" $ctx | nindent 4 }}
spec:
  replicas: {{ $svc.replicas }}
  selector:
    matchLabels:
      {{- include "livecart.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "livecart.labels" $ctx | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $v.ports.http | quote }}
        prometheus.io/path: /metrics
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "livecart.podBase" $ctx | trim | nindent 6 }}
      containers:
        - name: {{ $name }}
          args: [livecart_{{ $name }}]
          {{- include "livecart.containerBase" $ctx | nindent 10 }}
          ports:
            - name: http
              containerPort: {{ $v.ports.http }}
            - name: grpc
              containerPort: {{ $v.ports.grpc }}
            {{- range $svc.extraPorts }}
            - name: {{ .name }}
              containerPort: {{ .port }}
            {{- end }}
          # Start-up connects Kafka (and Postgres) before HTTP listens: give it a minute.
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            failureThreshold: 3
          # Ready means "can serve": a shared dependency that is down (Kafka, Postgres) leaves
          # the pod ready and degraded (/readyz?verbose); draining at SIGTERM makes it unready.
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            failureThreshold: 2
          resources:
            {{- toYaml ($svc.resources | default $v.resources) | nindent 12 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "livecart.fullname" $root }}-{{ $name }}
  labels:
    {{- include "livecart.labels" $ctx | nindent 4 }}
spec:
  type: {{ $v.service.type }}
  {{- with $svc.sessionAffinity }}
  sessionAffinity: {{ . }}
  {{- end }}
  selector:
    {{- include "livecart.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.ports.http }}
      targetPort: http
    - name: grpc
      port: {{ $v.ports.grpc }}
      targetPort: grpc
    {{- range $svc.extraPorts }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
    {{- end }}
{{- if $svc.headless }}
---
# Every pod's address under one name (no load balancing): for callers that talk to each pod.
apiVersion: v1
kind: Service
metadata:
  name: {{ include "livecart.fullname" $root }}-{{ $name }}-pods
  labels:
    {{- include "livecart.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "livecart.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $v.ports.grpc }}
      targetPort: grpc
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
