{{- define "probe.labels" -}}
app.kubernetes.io/name: probe
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "probe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "probe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}
