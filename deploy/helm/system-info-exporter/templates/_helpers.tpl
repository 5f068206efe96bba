{{/*
The app.kubernetes.io/name label: always the chart name, never overridden. It
is the job label of the scrape (ServiceMonitor jobLabel), which the alert
SystemInfoExporterDown and the kustomize install use: series continue across
the two.
*/}}
{{- define "sie.name" -}}
{{- .Chart.Name -}}
{{- end }}

{{/* Object names: as deploy/kubernetes for a release named after the chart. */}}
{{- define "sie.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* Selector labels: immutable in a DaemonSet, so nothing that changes on upgrade. */}}
{{- define "sie.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sie.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sie.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sie.selectorLabels" . }}
app.kubernetes.io/version: {{ include "sie.tag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: system-info-exporter
{{- end }}

{{- define "sie.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end }}

{{/*
"true" when the Prometheus Operator object named by the argument
("serviceMonitor" or "prometheusRule") is to be rendered: its enabled value,
or where that is null, whether the cluster serves monitoring.coreos.com/v1
(helm template: only with --api-versions monitoring.coreos.com/v1).
*/}}
{{- define "sie.operatorObject" -}}
{{- $ctx := index . 0 -}}
{{- $enabled := (index $ctx.Values (index . 1)).enabled -}}
{{- if kindIs "bool" $enabled -}}
{{- if $enabled }}true{{ end -}}
{{- else if $ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}
true
{{- end -}}
{{- end }}

{{/* A file of the chart read through a symlink; fails when it is missing. */}}
{{- define "sie.sourceFile" -}}
{{- $ctx := index . 0 -}}
{{- $path := index . 1 -}}
{{- $text := $ctx.Files.Get $path -}}
{{- if not $text -}}
{{- fail (printf "%s is empty or missing: it links to %s in the repository, and this copy of the chart was loaded without following symlinks (package the chart with helm package, which includes the linked files)" $path (index . 2)) -}}
{{- end -}}
{{- $text -}}
{{- end }}
