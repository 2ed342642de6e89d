{{/*
Checks that span several values; the schema checks single fields. Every message is collected and
reported at once.
*/}}
{{- define "rmodelpack.validateValues" -}}
{{- $messages := list }}
{{- $v := .Values }}
{{- /* The old name is in the schema only so that this message, not "additional properties", is
what a pre-rename values file (or helm upgrade --reuse-values) gets. */}}
{{- range $key, $_ := $v.server }}
{{- $messages = append $messages (printf "server.* was renamed runtime.*: move server.%s to runtime.%s" $key $key) }}
{{- end }}
{{- if and (hasKey $v "server") (not $v.server) }}
{{- $messages = append $messages "server.* was renamed runtime.*: remove server and set the same keys under runtime" }}
{{- end }}
{{- $workersMessage := include "rmodelpack.autoWorkersMessage" . }}
{{- if $workersMessage }}
{{- $messages = append $messages $workersMessage }}
{{- end }}
{{- if and $v.autoscaling.enabled $v.keda.enabled }}
{{- $messages = append $messages "autoscaling.enabled and keda.enabled are mutually exclusive: KEDA creates its own HPA; set autoscaling.enabled=false" }}
{{- end }}
{{- if eq $v.model.source "url" }}
{{- if not $v.model.url.existingSecret }}
{{- $messages = append $messages "model.source=url needs model.url.existingSecret (a Secret holding the download URL)" }}
{{- end }}
{{- if not $v.model.sha256 }}
{{- $messages = append $messages "model.source=url needs model.sha256 so the download can be verified" }}
{{- end }}
{{- end }}
{{- if and (eq $v.model.source "pvc") (not $v.model.pvc.claimName) }}
{{- $messages = append $messages "model.source=pvc needs model.pvc.claimName (an existing PersistentVolumeClaim)" }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.host) }}
{{- $messages = append $messages "ingress.enabled needs ingress.host" }}
{{- end }}
{{- /* The offending line is never echoed: it may hold a plaintext password. */}}
{{- range $i, $line := $v.auth.users }}
{{- if not (regexMatch "^[^:\\s]+:\\$2[abxy]\\$[0-9]{2}\\$[./A-Za-z0-9]{53}$" $line) }}
{{- $messages = append $messages (printf "auth.users[%d] is not an htpasswd line with a bcrypt hash (name:$2y$...); plaintext passwords are refused" $i) }}
{{- end }}
{{- end }}
{{- if and $v.auth.users $v.auth.existingSecret }}
{{- $messages = append $messages "auth.users and auth.existingSecret are both set: keep one (the hashed users or the existing Secret)" }}
{{- end }}
{{- if and $v.auth.enabled (not $v.auth.existingSecret) (not $v.auth.users) }}
{{- $messages = append $messages "auth.enabled needs auth.users (bcrypt htpasswd lines) or auth.existingSecret" }}
{{- end }}
{{- if and $v.auth.enabled (not $v.ingress.enabled) }}
{{- $messages = append $messages "auth.enabled needs ingress.enabled: authentication is enforced by the ingress controller" }}
{{- end }}
{{- if and (eq $v.ingress.kind "IngressRoute") (ne $v.ingress.flavor "traefik") }}
{{- $messages = append $messages "ingress.kind=IngressRoute is a Traefik CRD: it needs ingress.flavor=traefik" }}
{{- end }}
{{- if and $v.rateLimit.enabled $v.rateLimit.connections (ne $v.ingress.flavor "nginx") }}
{{- $messages = append $messages "rateLimit.connections is an ingress-nginx limit (limit-connections): it needs ingress.flavor=nginx, or set it to 0" }}
{{- end }}
{{- if eq $v.ingress.flavor "nginx" }}
{{- if and $v.rateLimit.enabled (not (has (toString $v.rateLimit.period) (list "1s" "1m"))) }}
{{- $messages = append $messages (printf "rateLimit.period=%s: ingress-nginx limits per second or per minute only; use 1s or 1m" (toString $v.rateLimit.period)) }}
{{- end }}
{{- end }}
{{- /* The manifest's REALM: characters both controllers accept (ingress-nginx validates the
auth-realm annotation; Traefik puts the realm in a quoted WWW-Authenticate header). */}}
{{- if and $v.auth.enabled (not (regexMatch "^[A-Za-z0-9 ._-]{1,64}$" (default (include "rmodelpack.fullname" .) $v.auth.realm))) }}
{{- $messages = append $messages "auth.realm has characters an ingress controller rejects: use letters, digits, spaces, '.', '_' and '-' (at most 64)" }}
{{- end }}
{{- if and $v.tls.enabled $v.tls.issuer.create }}
{{- if and (hasPrefix "acme" $v.tls.issuer.type) (not $v.tls.issuer.acme.email) }}
{{- $messages = append $messages "tls.issuer.type=acme-* needs tls.issuer.acme.email" }}
{{- end }}
{{- if and (eq $v.tls.issuer.type "ca") (not $v.tls.issuer.ca.secretName) }}
{{- $messages = append $messages "tls.issuer.type=ca needs tls.issuer.ca.secretName" }}
{{- end }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.certificate.create) (not $v.tls.secretName) }}
{{- $messages = append $messages "tls.certificate.create=false needs tls.secretName (an existing kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and $v.ipAllowList.enabled (not $v.ipAllowList.sourceRange) }}
{{- $messages = append $messages "ipAllowList.enabled needs at least one CIDR in ipAllowList.sourceRange" }}
{{- end }}
{{- if and $v.pdb.create $v.pdb.minAvailable (not (kindIs "invalid" $v.pdb.maxUnavailable)) (ne (toString $v.pdb.maxUnavailable) "") }}
{{- $messages = append $messages "pdb.minAvailable and pdb.maxUnavailable are mutually exclusive: empty one of them" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- $messages = append $messages "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and $v.keda.enabled (gt (int $v.keda.minReplicas) (int $v.keda.maxReplicas)) }}
{{- $messages = append $messages "keda.minReplicas must not exceed keda.maxReplicas" }}
{{- end }}
{{- if and $v.tests.enabled $v.tests.ingress.enabled $v.auth.enabled (not $v.tests.ingress.credentialsSecret) }}
{{- $messages = append $messages "tests.ingress.enabled with auth.enabled needs tests.ingress.credentialsSecret" }}
{{- end }}
{{- range (include "rmodelpack.clashMessages" . | splitList "\n" | compact) }}
{{- $messages = append $messages . }}
{{- end }}
{{- /* Label values have a pattern in the schema; its keys are checked here, where the message
can name the map (the schema's propertyNames errors point at the wrong value). */}}
{{- $labelMaps := dict
  "commonLabels" $v.commonLabels "podLabels" $v.podLabels "nodeSelector" $v.nodeSelector
  "serviceMonitor.labels" ($v.serviceMonitor.labels | default dict)
  "networkPolicy.ingressController.podLabels" ($v.networkPolicy.ingressController.podLabels | default dict)
  "networkPolicy.metrics.podLabels" ($v.networkPolicy.metrics.podLabels | default dict) }}
{{- range $source, $labels := $labelMaps }}
{{- range $key := keys $labels | sortAlpha }}
{{- if not (regexMatch "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" $key) }}
{{- $messages = append $messages (printf "%s has the key %q, which is not a label key: up to 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a DNS prefix and '/' (e.g. example.com/team)" $source $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.ingress.extraMiddlewares (ne $v.ingress.flavor "traefik") }}
{{- $messages = append $messages "ingress.extraMiddlewares are Traefik Middlewares: they need ingress.flavor=traefik (with ingress-nginx, use ingress.annotations)" }}
{{- end }}
{{- /* The API server refuses an IP address as an Ingress host, including one it reads with
leading zeros (010.0.0.1); 10.0.0.256 is no address and so a DNS name. */}}
{{- $octet := "0*(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])" }}
{{- if regexMatch (printf "^(%s\\.){3}%s$" $octet $octet) ($v.ingress.host | default "") }}
{{- $messages = append $messages (printf "ingress.host: %s is an IP address; an Ingress routes by host name: give the DNS name the clients call (the API server refuses an IP as an Ingress host)" $v.ingress.host) }}
{{- end }}
{{- /* Services are DNS-1035 labels: no '.', and a letter first. */}}
{{- $fullname := include "rmodelpack.fullname" . }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) }}
{{- $messages = append $messages (printf "the release name %s gives the resource name %s, which is not a valid Service name (lowercase letters, digits and '-', starting with a letter, no '.'): choose another release name or set fullnameOverride" .Release.Name $fullname) }}
{{- end }}
{{- if and (ne (toString $v.updateStrategy.type) "Recreate") (include "rmodelpack.isZero" (dig "rollingUpdate" "maxSurge" "25%" $v.updateStrategy)) (include "rmodelpack.isZero" (dig "rollingUpdate" "maxUnavailable" "25%" $v.updateStrategy)) }}
{{- $messages = append $messages "updateStrategy.rollingUpdate.maxSurge and maxUnavailable are both 0, so a rollout could never replace a pod: raise one of them" }}
{{- end }}
{{- if and (not (kindIs "invalid" $v.terminationGracePeriodSeconds)) (le (int64 $v.terminationGracePeriodSeconds) (int64 $v.preStopSleepSeconds)) }}
{{- $messages = append $messages (printf "terminationGracePeriodSeconds=%d must be above preStopSleepSeconds=%d (the grace period includes the preStop sleep): raise it, or set it to null for preStopSleepSeconds + runtime.drainSeconds + runtime.timeoutSeconds + 10" (int64 $v.terminationGracePeriodSeconds) (int64 $v.preStopSleepSeconds)) }}
{{- end }}
{{- $chartVolumes := dict "tmp" "/tmp" "model" (include "rmodelpack.modelMountPath" .) }}
{{- $restrictedVolumes := list "configMap" "csi" "downwardAPI" "emptyDir" "ephemeral" "persistentVolumeClaim" "projected" "secret" }}
{{- range $i, $volume := $v.extraVolumes }}
{{- if hasKey $chartVolumes (toString $volume.name) }}
{{- $messages = append $messages (printf "extraVolumes[%d] is named %s, a volume the chart defines itself: give it another name" $i $volume.name) }}
{{- end }}
{{- range $type := omit $volume "name" | keys | sortAlpha }}
{{- if not (has $type $restrictedVolumes) }}
{{- $messages = append $messages (printf "extraVolumes[%d] (%s) is a %s volume, which Pod Security \"restricted\" forbids: use one of %s" $i (toString $volume.name) $type (join ", " $restrictedVolumes)) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $i, $mount := $v.extraVolumeMounts }}
{{- if hasKey $chartVolumes (toString $mount.name) }}
{{- $messages = append $messages (printf "extraVolumeMounts[%d] mounts %s, a volume the chart mounts itself: mount a volume of extraVolumes" $i $mount.name) }}
{{- end }}
{{- if has (toString $mount.mountPath) (values $chartVolumes) }}
{{- $messages = append $messages (printf "extraVolumeMounts[%d] mounts at %s, where the chart mounts its own volume: choose another mountPath" $i $mount.mountPath) }}
{{- end }}
{{- end }}
{{- /* The environment the chart sets (rmodelpack.runtimeEnv), by the value that sets it. */}}
{{- $chartEnv := dict
  "RMP_PORT" "runtime.port" "RMP_WORKERS" "runtime.workers" "RMP_THREADS" "runtime.threads"
  "RMP_TIMEOUT_SECONDS" "runtime.timeoutSeconds" "RMP_DRAIN_SECONDS" "runtime.drainSeconds"
  "RMP_MAX_BODY_BYTES" "runtime.maxBodyBytes" "RMP_BATCHING" "runtime.batching.enabled"
  "RMP_BATCH_MAX_ROWS" "runtime.batching.maxRows" "RMP_TMPDIR" "tmpDir"
  "RMP_MODEL_PATH" "model.source and model.pvc.subPath" }}
{{- range (include "rmodelpack.runtimeEnv" . | fromYamlArray) }}
{{- $_ := set $chartEnv .name (get $chartEnv .name | default "the chart's runtime.* values") }}
{{- end }}
{{- range $i, $env := $v.extraEnv }}
{{- with get $chartEnv (toString $env.name) }}
{{- $messages = append $messages (printf "extraEnv[%d] sets %s, which the chart sets itself: use %s instead" $i $env.name .) }}
{{- end }}
{{- end }}
{{- if $v.keda.enabled }}
{{- if and (not $v.keda.triggers) (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage) }}
{{- $messages = append $messages "keda.enabled without keda.triggers scales on CPU at autoscaling.targetCPUUtilizationPercentage, which is null: set it, or give keda.triggers" }}
{{- end }}
{{- $triggerTypes := list }}
{{- range (default (list (dict "type" "cpu")) $v.keda.triggers) }}{{ $triggerTypes = append $triggerTypes .type }}{{ end }}
{{- if and (eq (int $v.keda.minReplicas) 0) (not (without $triggerTypes "cpu" "memory")) }}
{{- $messages = append $messages "keda.minReplicas=0 needs a trigger other than cpu or memory (KEDA cannot scale to zero on those alone): set keda.minReplicas to 1 or more, or add such a trigger to keda.triggers" }}
{{- end }}
{{- end }}
{{- if $messages }}
{{- fail (printf "\n\nVALUES VALIDATION:\n  - %s\n" (join "\n  - " $messages)) }}
{{- end }}
{{- end }}

{{/*
runtime.workers null means one worker per requested core, rounded up (the resourceFieldRef with
divisor 1); the runtime allows at most 64, like an explicit runtime.workers. Kubernetes takes the
request from the limit when only the limit is set. Empty when fine.
*/}}
{{- define "rmodelpack.autoWorkersMessage" -}}
{{- $v := .Values }}
{{- if kindIs "invalid" $v.runtime.workers }}
{{- $resources := $v.resources | default dict }}
{{- $cpu := coalesce (dig "requests" "cpu" "" $resources) (dig "limits" "cpu" "" $resources) | default "" | toString }}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?m?$" $cpu }}
{{- $cores := float64 (trimSuffix "m" $cpu) }}
{{- if hasSuffix "m" $cpu }}{{ $cores = divf $cores 1000 }}{{ end }}
{{- if gt (ceil $cores) 64.0 }}
{{- printf "runtime.workers is null (one worker per requested core), so resources cpu %s gives %d workers, above 64: set runtime.workers (1..64) or request at most 64 cpu" $cpu (int (ceil $cores)) }}
{{- else if eq (ceil $cores) 0.0 }}
{{- printf "runtime.workers is null (one worker per requested core), so resources cpu %s gives 0 workers and the server refuses to start: set resources.requests.cpu or runtime.workers" $cpu }}
{{- end }}
{{- else if not $cpu }}
{{- /* The downward API gives 0 for an unset request, and the server refuses 0 workers. */}}
{{- print "runtime.workers is null (one worker per requested core) but resources.requests.cpu is not set, so the pod would get 0 workers and crash-loop: set resources.requests.cpu or runtime.workers" }}
{{- else }}
{{- printf "runtime.workers is null (one worker per requested core), but resources cpu %s is not in cores (\"2\", \"1.5\") or millicores (\"500m\"), the forms the worker count is checked in: write it so, or set runtime.workers" $cpu }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Messages, one a line, for the user labels and annotations a template prints beside keys the chart
sets itself: YAML keeps only the last of two equal keys, so the clash would silently drop the
chart's selector, basic auth or https redirect, or the user's value.
*/}}
{{- define "rmodelpack.clashMessages" -}}
{{- $v := .Values }}
{{- $chartLabels := include "rmodelpack.chartLabels" . | fromYaml | keys }}
{{- $labels := concat $chartLabels (keys $v.commonLabels) }}
{{- $ingress := list }}
{{- if and $v.ingress.enabled (eq $v.ingress.kind "Ingress") }}
{{- $ingress = include "rmodelpack.ingressAnnotations" . | fromYaml | keys }}
{{- if include "rmodelpack.routeIsHttpRedirect" . }}
{{- $ingress = concat $ingress (include "rmodelpack.redirectIngressAnnotations" . | fromYaml | keys) }}
{{- end }}
{{- /* ingress-nginx reads allowlist-source-range as another name of whitelist-source-range. */}}
{{- if has "nginx.ingress.kubernetes.io/whitelist-source-range" $ingress }}
{{- $ingress = append $ingress "nginx.ingress.kubernetes.io/allowlist-source-range" }}
{{- end }}
{{- end }}
{{- $ingressFix := "remove it (the chart's values set it; your own Traefik middlewares go in ingress.extraMiddlewares)" }}
{{- $checks := list
  (list "commonLabels" $v.commonLabels $chartLabels "the chart" "remove it")
  (list "podLabels" $v.podLabels $labels "the chart (or commonLabels)" "remove it")
  (list "podAnnotations" $v.podAnnotations (list "checksum/config" "rmodelpack.io/model") "the chart" "remove it (model.name sets rmodelpack.io/model)")
  (list "ingress.annotations" $v.ingress.annotations $ingress "the chart" $ingressFix)
  (list "commonAnnotations" $v.commonAnnotations $ingress "the chart" $ingressFix) }}
{{- if $v.serviceMonitor.enabled }}
{{- $checks = append $checks (list "serviceMonitor.labels" ($v.serviceMonitor.labels | default dict) $labels "the chart (or commonLabels)" "remove it") }}
{{- end }}
{{- range $checks }}
{{- $source := index . 0 }}{{ $own := index . 2 }}{{ $owner := index . 3 }}{{ $fix := index . 4 }}
{{- range $key := index . 1 | default dict | keys | sortAlpha }}
{{- if has $key $own }}
{{ printf "%s sets %s, which %s sets itself (YAML keeps only the last of two equal keys): %s" $source $key $owner $fix }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"true" when an int-or-percent value is zero.
*/}}
{{- define "rmodelpack.isZero" -}}
{{- if has (toString .) (list "0" "0%") }}true{{ end }}
{{- end }}
