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
The version label: the model's version when known, else the image tag.
*/}}
{{- define "rmodelpack.version" -}}
{{- default (default .Chart.AppVersion .Values.image.tag) .Values.model.version | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rmodelpack.labels" -}}
helm.sh/chart: {{ include "rmodelpack.chart" . }}
{{ include "rmodelpack.selectorLabels" . }}
app.kubernetes.io/version: {{ include "rmodelpack.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: model-server
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rmodelpack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rmodelpack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rmodelpack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rmodelpack.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

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
Grace period: preStop sleep + the server's drain + the longest in-flight request + a margin for
process exit, so the kubelet never SIGKILLs a pod that is still finishing requests.
*/}}
{{- define "rmodelpack.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add .Values.preStopSleepSeconds .Values.server.drainSeconds .Values.server.timeoutSeconds 10 }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
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
The ingress flavor decides which controller reads the routing objects. Flavor-dependent defaults
(IngressClass, controller namespace, controller Service) live here so an empty value means "the
usual one for this controller".
*/}}
{{- define "rmodelpack.isTraefik" -}}
{{- if eq .Values.ingress.flavor "traefik" }}true{{ end }}
{{- end }}

{{- define "rmodelpack.isNginx" -}}
{{- if eq .Values.ingress.flavor "nginx" }}true{{ end }}
{{- end }}

{{- define "rmodelpack.ingressClassName" -}}
{{- default .Values.ingress.flavor .Values.ingress.className }}
{{- end }}

{{- define "rmodelpack.ingressControllerNamespace" -}}
{{- $defaults := dict "traefik" "traefik" "nginx" "ingress-nginx" }}
{{- default (get $defaults .Values.ingress.flavor) .Values.networkPolicy.ingressController.namespace }}
{{- end }}

{{- define "rmodelpack.ingressControllerService" -}}
{{- $defaults := dict
  "traefik" "traefik.traefik.svc.cluster.local"
  "nginx" "ingress-nginx-controller.ingress-nginx.svc.cluster.local" }}
{{- default (get $defaults .Values.ingress.flavor) .Values.tests.ingress.service }}
{{- end }}

{{- define "rmodelpack.ingressControllerTitle" -}}
{{- get (dict "traefik" "Traefik" "nginx" "NGINX Ingress") .Values.ingress.flavor }}
{{- end }}

{{/*
The htpasswd key in the auth Secret: Traefik's basicAuth middleware reads `users`, ingress-nginx
(auth-secret-type auth-file) reads `auth`. Both accept the same bcrypt lines.
*/}}
{{- define "rmodelpack.authSecretKey" -}}
{{- ternary "auth" "users" (eq .Values.ingress.flavor "nginx") }}
{{- end }}

{{/*
Names of the Traefik Middlewares on the main router, in the order Traefik applies them: cheap
rejections (IP, rate) before authentication, and buffering last, once the caller is known.
*/}}
{{- define "rmodelpack.middlewareNames" -}}
{{- $names := list }}
{{- if .Values.ipAllowList.enabled }}{{ $names = append $names (include "rmodelpack.componentName" (list . "ipallowlist")) }}{{ end }}
{{- if .Values.rateLimit.enabled }}{{ $names = append $names (include "rmodelpack.componentName" (list . "ratelimit")) }}{{ end }}
{{- if .Values.auth.enabled }}{{ $names = append $names (include "rmodelpack.componentName" (list . "auth")) }}{{ end }}
{{- if .Values.buffering.enabled }}{{ $names = append $names (include "rmodelpack.componentName" (list . "buffering")) }}{{ end }}
{{- join "," $names }}
{{- end }}

{{- define "rmodelpack.redirectMiddlewareName" -}}
{{- include "rmodelpack.componentName" (list . "redirect-https") }}
{{- end }}

{{- define "rmodelpack.tlsOptionName" -}}
{{- include "rmodelpack.componentName" (list . "tls") }}
{{- end }}

{{/*
A comma-separated list of Middleware names as the Ingress annotation wants them:
<namespace>-<name>@kubernetescrd. Usage: include "rmodelpack.crdRefs" (list . "a,b")
*/}}
{{- define "rmodelpack.crdRefs" -}}
{{- $root := index . 0 }}
{{- $refs := list }}
{{- range (splitList "," (index . 1)) }}
{{- if . }}{{ $refs = append $refs (printf "%s-%s@kubernetescrd" $root.Release.Namespace .) }}{{ end }}
{{- end }}
{{- join "," $refs }}
{{- end }}

{{/*
Traefik needs a second router on the `web` entrypoint for the https redirect; ingress-nginx
redirects by annotation on the one Ingress.
*/}}
{{- define "rmodelpack.routeIsHttpRedirect" -}}
{{- if and .Values.ingress.enabled .Values.tls.enabled .Values.ingress.httpRedirect (include "rmodelpack.isTraefik" .) }}true{{ end }}
{{- end }}

{{/*
ingress-nginx's annotations for everything the Traefik flavor does with middlewares and
TLSOptions. Annotation values must be strings. The body limit is always set: ingress-nginx
enforces its own 1m default otherwise, which would cut below a larger server.maxBodyBytes.
The proxy timeouts outlast server.timeoutSeconds so the client gets the server's own timeout
error rather than the controller's 504 (its default read timeout is 60s).
*/}}
{{- define "rmodelpack.nginxAnnotations" -}}
{{- $v := .Values -}}
nginx.ingress.kubernetes.io/proxy-body-size: {{ int64 $v.server.maxBodyBytes | quote }}
nginx.ingress.kubernetes.io/proxy-read-timeout: {{ add $v.server.timeoutSeconds 5 | quote }}
nginx.ingress.kubernetes.io/proxy-send-timeout: {{ add $v.server.timeoutSeconds 5 | quote }}
{{- if $v.tls.enabled }}
{{- /* force-ssl-redirect also redirects while cert-manager has not issued the Secret yet. */}}
nginx.ingress.kubernetes.io/ssl-redirect: {{ $v.ingress.httpRedirect | toString | quote }}
nginx.ingress.kubernetes.io/force-ssl-redirect: {{ $v.ingress.httpRedirect | toString | quote }}
{{- end }}
{{- if $v.ipAllowList.enabled }}
{{- /* The pre-1.9 name; newer controllers read it as an alias of allowlist-source-range. */}}
nginx.ingress.kubernetes.io/whitelist-source-range: {{ join "," $v.ipAllowList.sourceRange | quote }}
{{- end }}
{{- if $v.rateLimit.enabled }}
{{- $unit := get (dict "1s" "rps" "1m" "rpm") (toString $v.rateLimit.period) }}
nginx.ingress.kubernetes.io/limit-{{ $unit }}: {{ $v.rateLimit.average | toString | quote }}
{{- /* nginx takes the burst as a multiple of the rate; round up so the burst is never smaller. */}}
nginx.ingress.kubernetes.io/limit-burst-multiplier: {{ div (add $v.rateLimit.burst $v.rateLimit.average -1) $v.rateLimit.average | max 1 | toString | quote }}
{{- with $v.rateLimit.connections }}
nginx.ingress.kubernetes.io/limit-connections: {{ . | toString | quote }}
{{- end }}
{{- end }}
{{- if $v.auth.enabled }}
nginx.ingress.kubernetes.io/auth-type: basic
nginx.ingress.kubernetes.io/auth-secret: {{ include "rmodelpack.authSecretName" . }}
nginx.ingress.kubernetes.io/auth-secret-type: auth-file
nginx.ingress.kubernetes.io/auth-realm: {{ default (include "rmodelpack.fullname" .) $v.auth.realm | quote }}
{{- end }}
{{- end }}

{{/*
Label that admits a pod through the NetworkPolicy (the helm test pod carries it).
*/}}
{{- define "rmodelpack.clientLabel" -}}
{{ include "rmodelpack.fullname" . | trunc 56 | trimSuffix "-" }}-client: "true"
{{- end }}

{{/*
Checks that span several values; the schema checks single fields. Every message is collected and
reported at once.
*/}}
{{- define "rmodelpack.validateValues" -}}
{{- $messages := list }}
{{- $v := .Values }}
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
{{- /* ingress-nginx refuses other characters in auth-realm (its annotation validation). */}}
{{- if and $v.auth.enabled (not (regexMatch "^[-._~a-zA-Z0-9/: ]*$" (default (include "rmodelpack.fullname" .) $v.auth.realm))) }}
{{- $messages = append $messages "auth.realm: ingress-nginx accepts only letters, digits, spaces and -._~/: in the realm" }}
{{- end }}
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
A NetworkPolicy peer: every pod of a namespace, or only the pods with the given labels.
*/}}
{{- define "rmodelpack.networkPolicyPeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  {{- with .podLabels }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
  {{- end }}
{{- end }}
