{{/* Routing: the ingress flavour (Traefik or ingress-nginx), its objects' names and
annotations, the Ingress rule, and the NetworkPolicy peers. */}}

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

{{/*
The main router's Middleware references, as the Ingress annotation wants them: the chart's own,
then ingress.extraMiddlewares (already provider-qualified, e.g. <namespace>-<name>@kubernetescrd).
*/}}
{{- define "rmodelpack.routerMiddlewares" -}}
{{- $own := include "rmodelpack.crdRefs" (list . (include "rmodelpack.middlewareNames" .)) }}
{{- join "," (compact (concat (list $own) .Values.ingress.extraMiddlewares)) }}
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
The annotations the chart sets on the main Ingress, and on the Traefik http-redirect Ingress.
rmodelpack.validateValues refuses user annotations with the same keys.
*/}}
{{- define "rmodelpack.ingressAnnotations" -}}
{{- if include "rmodelpack.isNginx" . }}
{{- include "rmodelpack.nginxAnnotations" . }}
{{- else }}
{{- if .Values.tls.enabled }}
traefik.ingress.kubernetes.io/router.entrypoints: {{ .Values.ingress.entrypoints.https | quote }}
traefik.ingress.kubernetes.io/router.tls: "true"
traefik.ingress.kubernetes.io/router.tls.options: {{ include "rmodelpack.crdRefs" (list . (include "rmodelpack.tlsOptionName" .)) | quote }}
{{- else }}
traefik.ingress.kubernetes.io/router.entrypoints: {{ .Values.ingress.entrypoints.http | quote }}
{{- end }}
{{- with include "rmodelpack.routerMiddlewares" . }}
traefik.ingress.kubernetes.io/router.middlewares: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rmodelpack.redirectIngressAnnotations" -}}
traefik.ingress.kubernetes.io/router.entrypoints: {{ .Values.ingress.entrypoints.http | quote }}
traefik.ingress.kubernetes.io/router.middlewares: {{ include "rmodelpack.crdRefs" (list . (include "rmodelpack.redirectMiddlewareName" .)) | quote }}
{{- end }}

{{/*
ingress-nginx's annotations for everything the Traefik flavor does with middlewares and
TLSOptions. Annotation values must be strings. The body limit is always set: ingress-nginx
enforces its own 1m default otherwise, which would cut below a larger runtime.maxBodyBytes.
The proxy timeouts outlast runtime.timeoutSeconds so the client gets the server's own timeout
error rather than the controller's 504 (its default read timeout is 60s).
*/}}
{{- define "rmodelpack.nginxAnnotations" -}}
{{- $v := .Values -}}
nginx.ingress.kubernetes.io/proxy-body-size: {{ int64 $v.runtime.maxBodyBytes | quote }}
nginx.ingress.kubernetes.io/proxy-read-timeout: {{ add $v.runtime.timeoutSeconds 5 | quote }}
nginx.ingress.kubernetes.io/proxy-send-timeout: {{ add $v.runtime.timeoutSeconds 5 | quote }}
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
nginx.ingress.kubernetes.io/limit-{{ $unit }}: {{ int64 $v.rateLimit.average | quote }}
{{- /* nginx takes the burst as a multiple of the rate; round up so the burst is never smaller. */}}
nginx.ingress.kubernetes.io/limit-burst-multiplier: {{ div (add $v.rateLimit.burst $v.rateLimit.average -1) $v.rateLimit.average | max 1 | toString | quote }}
{{- with $v.rateLimit.connections }}
nginx.ingress.kubernetes.io/limit-connections: {{ int64 . | quote }}
{{- end }}
{{- end }}
{{- if $v.auth.enabled }}
nginx.ingress.kubernetes.io/auth-type: basic
nginx.ingress.kubernetes.io/auth-secret: {{ include "rmodelpack.authSecretName" . | quote }}
nginx.ingress.kubernetes.io/auth-secret-type: auth-file
nginx.ingress.kubernetes.io/auth-realm: {{ default (include "rmodelpack.fullname" .) $v.auth.realm | quote }}
{{- end }}
{{- end }}

{{/*
A NetworkPolicy peer: every pod of a namespace, or only the pods with the given labels.
*/}}
{{- define "rmodelpack.networkPolicyPeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace | quote }}
  {{- with .podLabels }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
  {{- end }}
{{- end }}

{{/*
The one Ingress rule: the host, the path prefix, the Service.
*/}}
{{- define "rmodelpack.ingressRule" -}}
- host: {{ .Values.ingress.host | quote }}
  http:
    paths:
      - path: {{ .Values.ingress.path | quote }}
        pathType: Prefix
        backend:
          service:
            name: {{ include "rmodelpack.fullname" . | quote }}
            port:
              name: http
{{- end }}

{{/*
The IngressRoute rule matching the same requests as the Ingress rule.
*/}}
{{- define "rmodelpack.routeMatch" -}}
{{- printf "Host(`%s`) && PathPrefix(`%s`)" .Values.ingress.host .Values.ingress.path }}
{{- end }}
