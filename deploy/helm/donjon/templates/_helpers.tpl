{{- define "donjon.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "donjon.steward" -}}{{ .Release.Name }}-steward{{- end -}}
{{- define "donjon.labels" -}}
app.kubernetes.io/part-of: donjon
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "donjon.stewardSelector" -}}
app.kubernetes.io/name: donjon-steward
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "donjon.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "donjon.containerSecurity" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}
{{- define "donjon.dbEnv" -}}
{{- if eq .Values.database.mode "statefulset" }}
- name: DONJON_DB_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.database.statefulset.passwordSecret.name }}, key: {{ .Values.database.statefulset.passwordSecret.key }}}
- name: DONJON_DB_URL
  value: "postgresql://donjon:$(DONJON_DB_PASSWORD)@{{ .Release.Name }}-postgres:5432/donjon"
{{- else }}
- name: DONJON_DB_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.database.urlSecret.name }}, key: {{ .Values.database.urlSecret.key }}}
{{- end }}
{{- end -}}
