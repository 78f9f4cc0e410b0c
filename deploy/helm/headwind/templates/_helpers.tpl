{{/* Object names: "<release>-headwind", or the release name when it contains "headwind". */}}
{{- define "headwind.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains "headwind" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-headwind" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "headwind.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: headwind
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: headwind
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Called with (dict "root" $ "component" "web"). */}}
{{- define "headwind.selectorLabels" -}}
app.kubernetes.io/name: headwind
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "headwind.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "headwind.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "headwind.fullname" .) -}}
{{- end -}}

{{- define "headwind.configName" -}}
{{- include "headwind.fullname" . }}-config
{{- end -}}

{{- define "headwind.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "headwind.fullname" .)) -}}
{{- end -}}

{{/* What every Headwind container gets: the ConfigMap, then the Secret (which wins), and the
     pod's namespace as HEADWIND_NAMESPACE (where the leader Lease lives). */}}
{{- define "headwind.containerCommon" -}}
image: {{ include "headwind.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "headwind.configName" . }}
  - secretRef:
      name: {{ include "headwind.secretName" . }}
env:
  - name: HEADWIND_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* Pod-level fields shared by the three Deployments. */}}
{{- define "headwind.podCommon" -}}
serviceAccountName: {{ include "headwind.serviceAccountName" . }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end -}}

{{/* Pod annotations: restart the pods when the configuration changes. */}}
{{- define "headwind.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
