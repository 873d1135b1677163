{{- define "vlserve.name" -}}{{ .Release.Name }}-vlserve{{- end -}}
{{- define "vlserve.labels" -}}
app.kubernetes.io/name: vlserve
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "vlserve.apiKeysEnv" -}}
{{- if .Values.apiKeys.existingSecret }}
- name: VLSERVE_API_KEYS_FILE
  value: /run/secrets/vlserve/{{ .Values.apiKeys.key }}
{{- end }}
{{- end -}}
{{- define "vlserve.apiKeysVolume" -}}
{{- if .Values.apiKeys.existingSecret }}
- name: api-keys
  secret: {secretName: {{ .Values.apiKeys.existingSecret }}}
{{- end }}
{{- end -}}
{{- define "vlserve.apiKeysMount" -}}
{{- if .Values.apiKeys.existingSecret }}
- {name: api-keys, mountPath: /run/secrets/vlserve, readOnly: true}
{{- end }}
{{- end -}}
{{- define "vlserve.milvusTokenEnv" -}}
{{- if .Values.milvusToken.existingSecret }}
- name: VLSERVE_MILVUS_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .Values.milvusToken.existingSecret }}, key: {{ .Values.milvusToken.key }}}
{{- end }}
{{- end -}}
