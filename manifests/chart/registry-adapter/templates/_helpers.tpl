{{/* Chart name, truncated to a DNS label. */}}
{{- define "registry-adapter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the Service name istiod dials. A release called registry-adapter (or any name that contains the chart
name) gives "registry-adapter".
*/}}
{{- define "registry-adapter.fullname" -}}
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

{{- define "registry-adapter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "registry-adapter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registry-adapter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "registry-adapter.labels" -}}
helm.sh/chart: {{ include "registry-adapter.chart" . }}
{{ include "registry-adapter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: istio
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "registry-adapter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "registry-adapter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "registry-adapter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the adapter reads its configuration (the image's ENTRYPOINT uses the same path). */}}
{{- define "registry-adapter.configPath" -}}
/etc/registry-adapter/config.yaml
{{- end }}

{{/*
The adapter configuration: .Values.config with the listeners and TLS set from the chart's values. Rendered
once here so that the ConfigMap and the Deployment's checksum agree.
*/}}
{{- define "registry-adapter.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $server := deepCopy (get $cfg "server" | default dict) }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- $_ := set $server "debugListen" (printf "0.0.0.0:%d" (int .Values.ports.monitoring)) }}
{{- /* Dumps, pprof and the guard's release: loopback only, reached with kubectl port-forward. */}}
{{- $_ := set $server "adminListen" (printf "127.0.0.1:%d" (int .Values.ports.admin)) }}
{{- $_ := set $server "shards" (int .Values.shards) }}
{{- if include "registry-adapter.tls" . }}
{{- $_ := set $server "tls" (dict "certFile" (printf "%s/tls.crt" .Values.tls.mountPath) "keyFile" (printf "%s/tls.key" .Values.tls.mountPath)) }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- if .Values.stateFile.enabled }}
{{- $state := deepCopy (get $cfg "stateFile" | default dict) }}
{{- $_ := set $state "path" (printf "%s/state.json" (trimSuffix "/" .Values.stateFile.mountPath)) }}
{{- $_ := set $cfg "stateFile" $state }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
A one-peer NetworkPolicy "from" list, from a dict with namespaceSelector and/or podSelector. A key that is present is rendered even
when empty: namespaceSelector {} means every namespace, while no namespaceSelector means the release namespace.
*/}}
{{- define "registry-adapter.networkPolicyPeer" -}}
{{- $peer := dict }}
{{- if hasKey . "namespaceSelector" }}{{ $_ := set $peer "namespaceSelector" (.namespaceSelector | default dict) }}{{ end }}
{{- if hasKey . "podSelector" }}{{ $_ := set $peer "podSelector" (.podSelector | default dict) }}{{ end }}
{{- if not $peer }}{{ fail "networkPolicy: a peer needs namespaceSelector or podSelector" }}{{ end }}
{{- toYaml (list $peer) }}
{{- end }}

{{/*
The xDS ports, one per shard, as a list of dicts {name, port}: grpc-xds on ports.grpc, then grpc-xds-<i> on
ports.grpc + i. The adapter listens on the same ports (server.listen's port + i).
*/}}
{{- define "registry-adapter.xdsPorts" -}}
{{- $out := list }}
{{- range $i := until (int .Values.shards) }}
{{- $name := ternary "grpc-xds" (printf "grpc-xds-%d" $i) (eq $i 0) }}
{{- $out = append $out (dict "name" $name "port" (add (int $.Values.ports.grpc) $i)) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Kubernetes sink: "true" (non-empty) when config.sink writes to the Kubernetes API.
*/}}
{{- define "registry-adapter.kubeSink" -}}
{{- $sink := (.Values.config | default dict).sink | default "xds" }}
{{- if or (eq $sink "kubernetes") (eq $sink "both") }}true{{ end }}
{{- end }}

{{- define "registry-adapter.outputNamespace" -}}
{{- /* The adapter's own default (convert.DefaultNamespace) when config.output.namespace is unset. */}}
{{- ((.Values.config | default dict).output | default dict).namespace | default "registry-adapter-entries" }}
{{- end }}

{{- define "registry-adapter.kubeSinkConfig" -}}
{{- toYaml ((.Values.config | default dict).kubernetesSink | default dict) }}
{{- end }}

{{- define "registry-adapter.leaderElection" -}}
{{- $le := (include "registry-adapter.kubeSinkConfig" . | fromYaml).leaderElection | default dict }}
{{- if or (not (hasKey $le "enabled")) $le.enabled }}true{{ end }}
{{- end }}

{{- define "registry-adapter.leaseNamespace" -}}
{{- $le := (include "registry-adapter.kubeSinkConfig" . | fromYaml).leaderElection | default dict }}
{{- $le.leaseNamespace | default (include "registry-adapter.outputNamespace" .) }}
{{- end }}

{{- define "registry-adapter.leaseName" -}}
{{- $le := (include "registry-adapter.kubeSinkConfig" . | fromYaml).leaderElection | default dict }}
{{- $le.leaseName | default "registry-adapter" }}
{{- end }}

{{/*
The xDS sink: "true" (non-empty) when config.sink serves istiod over MCP-over-xDS (xds, the default, or both).
*/}}
{{- define "registry-adapter.xdsSink" -}}
{{- $sink := (.Values.config | default dict).sink | default "xds" }}
{{- if or (eq $sink "xds") (eq $sink "both") }}true{{ end }}
{{- end }}

{{/*
TLS toward istiod: "true" when tls.enabled and something dials the xDS listener (sink xds or both). With sink
kubernetes nobody dials it, so no certificate is made or mounted.
*/}}
{{- define "registry-adapter.tls" -}}
{{- if and .Values.tls.enabled (include "registry-adapter.xdsSink" .) }}true{{ end }}
{{- end }}

{{/* The kubernetes.io/tls Secret the pods mount and istiod reads ca.crt from (credentialName). */}}
{{- define "registry-adapter.tlsSecretName" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "registry-adapter.fullname" .)) }}
{{- end }}

{{/* The DNS name istiod dials and pins (sni, subjectAltNames): the Service's. */}}
{{- define "registry-adapter.serviceHost" -}}
{{- printf "%s.%s.svc" (include "registry-adapter.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
Where the key pair comes from: existing (tls.existingSecret), certManager (tls.certManager.enabled) or generated.
*/}}
{{- define "registry-adapter.tlsSource" -}}
{{- if .Values.tls.existingSecret }}existing{{ else if .Values.tls.certManager.enabled }}certManager{{ else }}generated{{ end }}
{{- end }}

{{/*
The output namespace is created by the chart when the Kubernetes sink writes there, outputNamespace.create is on,
and it is not the release namespace (which exists before the release). The lease namespace likewise.
*/}}
{{- define "registry-adapter.namespacesToCreate" -}}
{{- $out := list }}
{{- if and (include "registry-adapter.kubeSink" .) .Values.outputNamespace.create }}
{{- $nss := list (include "registry-adapter.outputNamespace" .) }}
{{- if include "registry-adapter.leaderElection" . }}{{ $nss = append $nss (include "registry-adapter.leaseNamespace" .) }}{{ end }}
{{- range $nss }}
{{- if and (ne . $.Release.Namespace) (not (has . $out)) }}{{ $out = append $out . }}{{ end }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The generated key pair as Secret data (base64): ca.crt, tls.crt, tls.key. Read back from the cluster when the
Secret holds all three (lookup; empty under `helm template`), generated otherwise. Computed once per render and kept
in .Values, so that the Secret and the Deployment's checksum see the same pair.
*/}}
{{- define "registry-adapter.generatedTLS" -}}
{{- if not (hasKey .Values "__generatedTLS") }}
{{- $name := include "registry-adapter.tlsSecretName" . }}
{{- $old := lookup "v1" "Secret" .Release.Namespace $name | default dict }}
{{- $data := $old.data | default dict }}
{{- if not (and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key")) }}
{{- $host := include "registry-adapter.serviceHost" . }}
{{- $days := int .Values.tls.generated.validityDays }}
{{- $ca := genCA (printf "%s-ca" (include "registry-adapter.fullname" .)) $days }}
{{- $cert := genSignedCert $host nil (list $host) $days $ca }}
{{- $data = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) }}
{{- end }}
{{- $_ := set .Values "__generatedTLS" (dict "ca.crt" (index $data "ca.crt") "tls.crt" (index $data "tls.crt") "tls.key" (index $data "tls.key")) }}
{{- end }}
{{- toYaml (get .Values "__generatedTLS") }}
{{- end }}
