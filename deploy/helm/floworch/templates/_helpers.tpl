{{/* Names, labels and the pieces every pod shares. */}}

{{- define "floworch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "floworch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels a Service or a controller selects on: list $ "component" */}}
{{- define "floworch.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "floworch.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "floworch.labels" -}}
{{ include "floworch.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
app.kubernetes.io/part-of: floworch
{{- end -}}

{{- define "floworch.secretName" -}}
{{- .Values.secret.name | default (include "floworch.fullname" .) -}}
{{- end -}}

{{- define "floworch.configName" -}}
{{- include "floworch.fullname" . -}}
{{- end -}}

{{- define "floworch.dataClaim" -}}
{{- default (printf "%s-data" (include "floworch.fullname" .)) .Values.data.existingClaim -}}
{{- end -}}

{{/* A build id as it may appear in a resource name: lower case, [a-z0-9-]. */}}
{{- define "floworch.buildSlug" -}}
{{- $slug := . | toString | lower | replace "_" "-" -}}
{{- if or (contains "." (toString .)) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $slug)) -}}
{{- fail (printf "worker build id %q: use letters, digits, '_' and '-' only (no '.', which Temporal's version names use as separator), starting and ending with a letter or digit; it becomes part of the worker Deployment's name" (toString .)) -}}
{{- end -}}
{{- $slug -}}
{{- end -}}

{{/* The worker Deployment of a fleet: list $ buildId */}}
{{- define "floworch.workerName" -}}
{{- $ := index . 0 -}}
{{- printf "%s-worker-%s" (include "floworch.fullname" $ | trunc 40 | trimSuffix "-") (include "floworch.buildSlug" (index . 1)) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* host:port of the Temporal frontend: the setting, else the Temporal chart of this release. */}}
{{- define "floworch.temporalAddress" -}}
{{- if .Values.settings.temporalAddress -}}
{{- .Values.settings.temporalAddress -}}
{{- else if .Values.temporal.enabled -}}
{{- $name := default "temporal" .Values.temporal.nameOverride -}}
{{- $full := .Values.temporal.fullnameOverride | default (ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name)) | trunc 63 | trimSuffix "-" -}}
{{- printf "%s-frontend.%s.svc:%v" $full .Release.Namespace (dig "server" "frontend" "service" "port" 7233 .Values.temporal) -}}
{{- else -}}
{{- fail "settings.temporalAddress is required when temporal.enabled is false: set it to the host:port of your Temporal frontend (e.g. temporal-frontend.temporal.svc:7233, or <namespace>.<account>.tmprl.cloud:7233 for Temporal Cloud), or set temporal.enabled=true to install Temporal with this release" -}}
{{- end -}}
{{- end -}}

{{- define "floworch.image" -}}
{{- $ := index . 0 -}}
{{- printf "%s:%s" $.Values.image.repository (index . 1 | default $.Values.image.tag | default $.Chart.AppVersion) -}}
{{- end -}}

{{/* FLOWORCH_* variables of every FlowOrchestrator process: the ConfigMap's, and the Secret's keys. */}}
{{- define "floworch.env" -}}
- name: FLOWORCH_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "floworch.secretName" . }}, key: database-url}
- name: FLOWORCH_DATABASE_READ_URL
  valueFrom:
    secretKeyRef: {name: {{ include "floworch.secretName" . }}, key: database-read-url, optional: true}
- name: FLOWORCH_DATABASE_OWNER_URL
  valueFrom:
    secretKeyRef: {name: {{ include "floworch.secretName" . }}, key: database-owner-url, optional: true}
- name: FLOWORCH_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ include "floworch.secretName" . }}, key: redis-url, optional: true}
- name: FLOWORCH_TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "floworch.secretName" . }}, key: temporal-api-key, optional: true}
{{- if .Values.temporalConnection.clientCertSecret }}
- name: FLOWORCH_TEMPORAL_TLS_CERT
  value: /etc/floworch/temporal-tls/tls.crt
- name: FLOWORCH_TEMPORAL_TLS_KEY
  value: /etc/floworch/temporal-tls/tls.key
- name: FLOWORCH_TEMPORAL_TLS_CA
  value: /etc/floworch/temporal-tls/ca.crt
{{- end }}
{{- if .Values.keyFile.secretName }}
- name: FLOWORCH_KEY_FILE
  value: /etc/floworch/keys/keys.json
{{- end }}
{{- end -}}

{{- define "floworch.volumeMounts" -}}
- {name: data, mountPath: /data}
- {name: tmp, mountPath: /tmp}
{{- if .Values.temporalConnection.clientCertSecret }}
- {name: temporal-tls, mountPath: /etc/floworch/temporal-tls, readOnly: true}
{{- end }}
{{- if .Values.keyFile.secretName }}
- {name: key-file, mountPath: /etc/floworch/keys, readOnly: true}
{{- end }}
{{- end -}}

{{- define "floworch.volumes" -}}
- name: data
  persistentVolumeClaim: {claimName: {{ include "floworch.dataClaim" . }}}
- name: tmp
  emptyDir: {}
{{- if .Values.temporalConnection.clientCertSecret }}
- name: temporal-tls
  secret:
    secretName: {{ .Values.temporalConnection.clientCertSecret }}
    defaultMode: 0440  # readable by the pod's group (fsGroup): the files belong to root
{{- end }}
{{- if .Values.keyFile.secretName }}
- name: key-file
  secret:
    secretName: {{ .Values.keyFile.secretName }}
    items: [{key: keys.json, path: keys.json}]
    defaultMode: 0440  # readable by the pod's group (fsGroup): the files belong to root
{{- end }}
{{- end -}}

{{/* Checks on the values as a whole, so a bad combination fails at `helm install`, not at run time. */}}
{{- define "floworch.validate" -}}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled -}}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled are both true: enable one autoscaler for the workers, not two (both would set the worker Deployment's replicas)" -}}
{{- end -}}
{{- if and .Values.secret.create (not (index .Values.secret.values "database-url")) -}}
{{- fail "secret.create is true but secret.values.database-url is empty: give the PostgreSQL URL of the application's role (postgresql+psycopg://user:password@host/db); workers on several nodes cannot share an SQLite file" -}}
{{- end -}}
{{- if and .Values.temporalConnection.clientCertSecret (not .Values.temporalConnection.tls) -}}
{{- fail "temporalConnection.clientCertSecret is set but temporalConnection.tls is false: set temporalConnection.tls=true to use the client certificate" -}}
{{- end -}}
{{- if and .Values.temporalConnection.apiKey .Values.secret.create (not (index .Values.secret.values "temporal-api-key")) -}}
{{- fail "temporalConnection.apiKey is true but secret.values.temporal-api-key is empty: give the Temporal API key" -}}
{{- end -}}
{{- $grace := int .Values.worker.terminationGracePeriodSeconds -}}
{{- if le $grace 10 -}}
{{- fail (printf "worker.terminationGracePeriodSeconds is %d: a worker drains its running activities for up to 10 s after SIGTERM; give it more (30 is the default) or Kubernetes kills activities mid-way" $grace) -}}
{{- end -}}
{{- range .Values.worker.draining -}}
{{- if eq (toString .buildId) (toString $.Values.worker.buildId) -}}
{{- fail (printf "worker.draining lists build id %q, which is worker.buildId, the current fleet: a draining fleet is an older one" (toString .buildId)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
