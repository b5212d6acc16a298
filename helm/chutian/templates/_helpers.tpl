{{- define "chutian.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "chutian.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selector labels of one component: include "chutian.selector" (list . "api") */}}
{{- define "chutian.selector" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "chutian.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chutian.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chutian.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Settings as env: plain values inline, secrets only by reference (never in values). */}}
{{- define "chutian.env" -}}
- name: CHUTIAN_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required" .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
- name: CHUTIAN_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "broker.existingSecret is required" .Values.broker.existingSecret }}
      key: {{ .Values.broker.urlKey }}
- name: CHUTIAN_SECRET_KEYS_FILE
  value: /etc/chutian/secret-keys/{{ .Values.secretKeys.key }}
{{- if .Values.cloudsYaml.existingSecret }}
- name: CHUTIAN_CLOUDS_YAML
  value: /etc/chutian/clouds/{{ .Values.cloudsYaml.key }}
{{- end }}
{{- if .Values.kubeconfig.existingSecret }}
- name: CHUTIAN_KUBECONFIG
  value: /etc/chutian/kube/{{ .Values.kubeconfig.key }}
{{- end }}
{{- if .Values.siteFile.existingConfigMap }}
- name: CHUTIAN_SITE_FILE
  value: /etc/chutian/site/{{ .Values.siteFile.key }}
{{- end }}
- name: CHUTIAN_DATA_DIR
  value: /var/lib/chutian
- name: CHUTIAN_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: CHUTIAN_DEMO_DATA
  value: {{ .Values.config.demoData | quote }}
- name: CHUTIAN_HEARTBEAT_INTERVAL_S
  value: {{ .Values.config.heartbeatIntervalS | quote }}
- name: CHUTIAN_HEARTBEAT_MAX_AGE_S
  value: {{ .Values.config.heartbeatMaxAgeS | quote }}
- name: CHUTIAN_AUDIT_VERIFY_INTERVAL_S
  value: {{ .Values.config.auditVerifyIntervalS | quote }}
- name: CHUTIAN_QUOTA_METRICS_DEPTH
  value: {{ .Values.config.quotaMetricsDepth | quote }}
- name: HOME
  value: /tmp
{{- range $name, $value := .Values.config.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "chutian.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/chutian
- name: secret-keys
  mountPath: /etc/chutian/secret-keys
  readOnly: true
{{- if .Values.cloudsYaml.existingSecret }}
- name: clouds
  mountPath: /etc/chutian/clouds
  readOnly: true
{{- end }}
{{- if .Values.kubeconfig.existingSecret }}
- name: kube
  mountPath: /etc/chutian/kube
  readOnly: true
{{- end }}
{{- if .Values.siteFile.existingConfigMap }}
- name: site
  mountPath: /etc/chutian/site
  readOnly: true
{{- end }}
{{- end -}}

{{- define "chutian.volumes" -}}
- name: tmp
  emptyDir: {}
- name: data
  emptyDir: {}
- name: secret-keys
  secret:
    secretName: {{ required "secretKeys.existingSecret is required" .Values.secretKeys.existingSecret }}
    defaultMode: 0400
{{- if .Values.cloudsYaml.existingSecret }}
- name: clouds
  secret:
    secretName: {{ .Values.cloudsYaml.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- if .Values.kubeconfig.existingSecret }}
- name: kube
  secret:
    secretName: {{ .Values.kubeconfig.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- if .Values.siteFile.existingConfigMap }}
- name: site
  configMap:
    name: {{ .Values.siteFile.existingConfigMap }}
{{- end }}
{{- end -}}

{{/* Pod-level fields every component shares: include "chutian.podCommon" (list . .Values.api) */}}
{{- define "chutian.podCommon" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
serviceAccountName: {{ include "chutian.serviceAccountName" $root }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "chutian.volumes" $root | nindent 2 }}
{{- end -}}
