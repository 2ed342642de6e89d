{{/* Names and labels: resource names, derived names and the common labels. */}}

{{/*
Chart name, cut to the 63 characters a label value allows.
*/}}
{{- define "rmodelpack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or the release name when it already contains the
chart name. Cut to 63 characters because some Kubernetes name fields are limited to that.
*/}}
{{- define "rmodelpack.fullname" -}}
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
A derived resource name: <fullname>-<suffix>, kept within 63 characters.
Usage: include "rmodelpack.componentName" (list . "auth")
*/}}
{{- define "rmodelpack.componentName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "rmodelpack.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "rmodelpack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The version label: the model's version when known, else the image tag. A label value starts and
ends with a letter or digit; an image tag may start with '_' or, cut to 63, end in '.' or '-'.
*/}}
{{- define "rmodelpack.version" -}}
{{- $version := default (default .Chart.AppVersion .Values.image.tag) .Values.model.version | trunc 63 }}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" $version "" }}
{{- end }}

{{- define "rmodelpack.labels" -}}
{{ include "rmodelpack.chartLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The labels the chart sets itself; rmodelpack.validateValues refuses user labels with these keys.
*/}}
{{- define "rmodelpack.chartLabels" -}}
helm.sh/chart: {{ include "rmodelpack.chart" . | quote }}
{{ include "rmodelpack.selectorLabels" . }}
app.kubernetes.io/version: {{ include "rmodelpack.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/component: model-server
{{- end }}

{{- define "rmodelpack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rmodelpack.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- define "rmodelpack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rmodelpack.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rmodelpack.tlsSecretName" -}}
{{- default (include "rmodelpack.componentName" (list . "tls")) .Values.tls.secretName }}
{{- end }}

{{- define "rmodelpack.issuerName" -}}
{{- include "rmodelpack.componentName" (list . "issuer") }}
{{- end }}

{{- define "rmodelpack.authSecretName" -}}
{{- default (include "rmodelpack.componentName" (list . "auth")) .Values.auth.existingSecret }}
{{- end }}

{{/*
Label that admits a pod through the NetworkPolicy (the helm test pod carries it).
*/}}
{{- define "rmodelpack.clientLabel" -}}
{{ include "rmodelpack.fullname" . | trunc 56 | trimSuffix "-" }}-client: "true"
{{- end }}

{{/*
An int-or-string field (a count or a percentage): a count stays a number (the API reads the string
"1" as an invalid percentage), anything else is quoted.
*/}}
{{- define "rmodelpack.intOrPercent" -}}
{{- if regexMatch "^[0-9]+$" (toString .) }}{{ int64 . }}{{ else }}{{ quote . }}{{ end }}
{{- end }}
