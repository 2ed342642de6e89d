{{/* The pod: image, model location, shutdown timing, the runtime's environment and the
model download. */}}

{{- define "rmodelpack.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Where the pod reads model.rds for the url and pvc sources (the image source needs no override).
*/}}
{{- define "rmodelpack.modelMountPath" -}}
/var/lib/rmodelpack/model
{{- end }}

{{- define "rmodelpack.modelPath" -}}
{{- if eq .Values.model.source "pvc" }}
{{- printf "%s/%s" (include "rmodelpack.modelMountPath" .) (trimPrefix "/" .Values.model.pvc.subPath) }}
{{- else if eq .Values.model.source "url" }}
{{- printf "%s/model.rds" (include "rmodelpack.modelMountPath" .) }}
{{- end }}
{{- end }}

{{/*
Every container's securityContext: containerSecurityContext, with the fields Pod Security
"restricted" requires filled in where a value is missing (helm deletes a value set to null). The
schema refuses values that contradict them.
*/}}
{{- define "rmodelpack.containerSecurityContext" -}}
{{- $context := omit .Values.containerSecurityContext "enabled" | deepCopy }}
{{- $required := dict
  "allowPrivilegeEscalation" false
  "runAsNonRoot" true
  "capabilities" (dict "drop" (list "ALL"))
  "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- range $key, $value := $required }}
{{- $current := index $context $key }}
{{- if kindIs "invalid" $current }}
{{- $_ := set $context $key $value }}
{{- else if kindIs "map" $value }}
{{- range $field, $default := $value }}
{{- if kindIs "invalid" (index $current $field) }}{{ $_ := set $current $field $default }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/*
Grace period: preStop sleep + the server's drain + the longest in-flight request + a margin for
process exit, so the kubelet never SIGKILLs a pod that is still finishing requests.
*/}}
{{- define "rmodelpack.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add .Values.preStopSleepSeconds .Values.runtime.drainSeconds .Values.runtime.timeoutSeconds 10 }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Environment of the model server (the runtime's RMP_* overrides, see docs/design.md).
*/}}
{{- define "rmodelpack.runtimeEnv" -}}
- name: RMP_PORT
  value: {{ .Values.runtime.port | quote }}
- name: RMP_WORKERS
{{- if kindIs "invalid" .Values.runtime.workers }}
  {{- /* One worker per requested core, rounded up: divisor 1 turns 500m into 1. */}}
  valueFrom:
    resourceFieldRef:
      containerName: model-server
      resource: requests.cpu
      divisor: "1"
{{- else }}
  value: {{ .Values.runtime.workers | quote }}
{{- end }}
- name: RMP_THREADS
  value: {{ .Values.runtime.threads | quote }}
- name: RMP_TIMEOUT_SECONDS
  value: {{ .Values.runtime.timeoutSeconds | quote }}
- name: RMP_DRAIN_SECONDS
  value: {{ .Values.runtime.drainSeconds | quote }}
- name: RMP_MAX_BODY_BYTES
  value: {{ int64 .Values.runtime.maxBodyBytes | quote }}
- name: RMP_BATCHING
  value: {{ .Values.runtime.batching.enabled | toString | quote }}
- name: RMP_BATCH_MAX_ROWS
  value: {{ int64 .Values.runtime.batching.maxRows | quote }}
- name: RMP_TMPDIR
  value: /tmp
{{- if ne .Values.model.source "image" }}
- name: RMP_MODEL_PATH
  value: {{ include "rmodelpack.modelPath" . | quote }}
{{- end }}
{{- end }}

{{/*
The url source: the model image itself runs its fetch-model.sh (rmodelpack/runtime/), which
downloads model.rds into the shared emptyDir and verifies it; a mismatch fails the init container,
so the pod never starts on a wrong model. The URL (a SAS token) comes from a Secret and is never
echoed.
*/}}
{{- define "rmodelpack.modelDownloadContainer" -}}
- name: fetch-model
  image: {{ include "rmodelpack.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy | quote }}
  securityContext:
    {{- include "rmodelpack.containerSecurityContext" . | nindent 4 }}
  {{- /* An image built before the script existed would fail with a bare "No such file" (127). */}}
  command:
    - /bin/bash
    - -c
    - >-
      [ -f "$1" ] || { echo "fetch-model: $1 is missing: model.source=url needs a model image
      built by rmodelpack {{ .Chart.AppVersion }} or later; rebuild the image or use model.source=image" >&2;
      exit 127; }; script="$1"; shift; exec /bin/bash "$script" "$@"
    - fetch-model
    - /opt/rmodelpack/runtime/fetch-model.sh
  {{- if .Values.model.url.allowHttp }}
  args:
    - --allow-http
  {{- end }}
  env:
    - name: MODEL_URL
      valueFrom:
        secretKeyRef:
          name: {{ .Values.model.url.existingSecret | quote }}
          key: {{ .Values.model.url.key | quote }}
    - name: MODEL_SHA256
      value: {{ .Values.model.sha256 | quote }}
    - name: MODEL_DIR
      value: {{ include "rmodelpack.modelMountPath" . }}
  volumeMounts:
    - name: model
      mountPath: {{ include "rmodelpack.modelMountPath" . }}
    - name: tmp
      mountPath: /tmp
  {{- with .Values.model.url.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
