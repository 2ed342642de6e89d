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
{{- if $messages }}
{{- fail (printf "\n\nVALUES VALIDATION:\n  - %s\n" (join "\n  - " $messages)) }}
{{- end }}
{{- end }}

{{/*
runtime.workers null means one worker per requested core, rounded up (the resourceFieldRef with
divisor 1); the runtime allows at most 64, like an explicit runtime.workers. Kubernetes takes the
request from the limit when only the limit is set. Empty when fine or when the CPU is not a plain
or milli-core quantity.
*/}}
{{- define "rmodelpack.autoWorkersMessage" -}}
{{- $v := .Values }}
{{- if kindIs "invalid" $v.runtime.workers }}
{{- $resources := $v.resources | default dict }}
{{- $cpu := toString (coalesce (dig "requests" "cpu" "" $resources) (dig "limits" "cpu" "" $resources) "") }}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?m?$" $cpu }}
{{- $cores := float64 (trimSuffix "m" $cpu) }}
{{- if hasSuffix "m" $cpu }}{{ $cores = divf $cores 1000 }}{{ end }}
{{- if gt (ceil $cores) 64.0 }}
{{- printf "runtime.workers is null (one worker per requested core), so resources cpu %s gives %d workers, above 64: set runtime.workers (1..64) or request at most 64 cpu" $cpu (int (ceil $cores)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
