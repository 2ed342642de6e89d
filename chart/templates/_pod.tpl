{{/*
Environment of the model server (the runtime's RMP_* overrides, see docs/design.md).
*/}}
{{- define "rmodelpack.serverEnv" -}}
- name: RMP_PORT
  value: {{ .Values.server.port | quote }}
- name: RMP_WORKERS
{{- if kindIs "invalid" .Values.server.workers }}
  {{- /* One worker per requested core, rounded up: divisor 1 turns 500m into 1. */}}
  valueFrom:
    resourceFieldRef:
      containerName: model-server
      resource: requests.cpu
      divisor: "1"
{{- else }}
  value: {{ .Values.server.workers | quote }}
{{- end }}
- name: RMP_THREADS
  value: {{ .Values.server.threads | quote }}
- name: RMP_TIMEOUT_SECONDS
  value: {{ .Values.server.timeoutSeconds | quote }}
- name: RMP_DRAIN_SECONDS
  value: {{ .Values.server.drainSeconds | quote }}
- name: RMP_MAX_BODY_BYTES
  value: {{ int64 .Values.server.maxBodyBytes | quote }}
- name: RMP_TMPDIR
  value: /tmp
{{- if ne .Values.model.source "image" }}
- name: RMP_MODEL_PATH
  value: {{ include "rmodelpack.modelPath" . }}
{{- end }}
{{- end }}

{{/*
The url source: the model image itself (it has bash, curl and sha256sum) downloads model.rds into
the shared emptyDir and verifies it; a mismatch fails the init container, so the pod never starts
on a wrong model. The URL (a SAS token) comes from a Secret and is never echoed.
*/}}
{{- define "rmodelpack.modelDownloadContainer" -}}
- name: fetch-model
  image: {{ include "rmodelpack.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .Values.containerSecurityContext.enabled }}
  securityContext:
    {{- omit .Values.containerSecurityContext "enabled" | toYaml | nindent 4 }}
  {{- end }}
  command:
    - /bin/bash
    - -c
    - |
      set -euo pipefail
      part="$MODEL_DIR/model.rds.part"
      {{- if .Values.model.url.allowHttp }}
      protocols="=http,https"
      {{- else }}
      protocols="=https"
      {{- end }}
      # curl exits 1 (unsupported protocol) for a URL or a redirect outside $protocols.
      rc=0
      curl --fail --silent --show-error --location --retry 3 --retry-delay 2 \
        --proto "$protocols" --proto-redir "$protocols" --output "$part" "$MODEL_URL" || rc=$?
      if [ "$rc" -eq 1 ]; then
        echo "fetch-model: refused: the model URL or a redirect is not https (allowed: ${protocols#=}); serve the model over https or set model.url.allowHttp=true" >&2
      fi
      if [ "$rc" -ne 0 ]; then
        rm -f "$part"
        exit "$rc"
      fi
      if ! echo "$MODEL_SHA256  $part" | sha256sum --check --strict --status -; then
        echo "fetch-model: sha256 of the downloaded model is $(sha256sum "$part" | cut -d' ' -f1), expected $MODEL_SHA256" >&2
        rm -f "$part"
        exit 1
      fi
      mv "$part" "$MODEL_DIR/model.rds"
      echo "fetch-model: model.rds verified (sha256 $MODEL_SHA256)"
  env:
    - name: MODEL_URL
      valueFrom:
        secretKeyRef:
          name: {{ .Values.model.url.existingSecret }}
          key: {{ .Values.model.url.key }}
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
