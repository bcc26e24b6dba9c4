{{/* NetworkPolicy pieces shared by the operator's and the bundled Prometheus' policies. */}}

{{/* A `from`/`to` peer: the namespaces named in a (non-empty) list, by their name label. */}}
{{- define "kubetune.networkPolicy.namespacesPeer" -}}
- namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values:
          {{- toYaml . | nindent 10 }}
{{- end }}

{{/* Egress every policy needs: DNS, and the API server (by CIDR when given, else any address). */}}
{{- define "kubetune.networkPolicy.clusterEgress" -}}
{{- $np := .Values.networkPolicy -}}
# DNS, wherever the cluster runs it.
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
# The API server: its endpoints' addresses (`kubectl get endpointslices -l
# kubernetes.io/service-name=kubernetes`) and ports; policies see them after the
# Service's address is translated.
- ports:
    {{- range $np.apiServer.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $np.apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
