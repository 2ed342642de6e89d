{{/*
The one Ingress rule: the host, the path prefix, the Service.
*/}}
{{- define "rmodelpack.ingressRule" -}}
- host: {{ .Values.ingress.host | quote }}
  http:
    paths:
      - path: {{ .Values.ingress.path }}
        pathType: Prefix
        backend:
          service:
            name: {{ include "rmodelpack.fullname" . }}
            port:
              name: http
{{- end }}

{{/*
The IngressRoute rule matching the same requests as the Ingress rule.
*/}}
{{- define "rmodelpack.routeMatch" -}}
{{- printf "Host(`%s`) && PathPrefix(`%s`)" .Values.ingress.host .Values.ingress.path }}
{{- end }}
