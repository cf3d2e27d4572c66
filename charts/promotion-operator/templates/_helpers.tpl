{{- define "promotion-operator.name" -}}
{{- default .Release.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "promotion-operator.serviceAccountName" -}}
{{- default (include "promotion-operator.name" .) .Values.serviceAccount.name -}}
{{- end -}}
{{- define "promotion-operator.labels" -}}
app.kubernetes.io/name: promotion-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
