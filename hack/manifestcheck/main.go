// Command manifestcheck checks the packaging for hack/chart-check.sh and hack/docker-check.sh, without a cluster,
// a container engine or the internet:
//
//	manifestcheck k8s FILE...         validate rendered Kubernetes manifests
//	manifestcheck config FILE         print the adapter config.yaml held by the ConfigMap in FILE
//	manifestcheck dashboard FILE      check a Grafana dashboard and print the metric names its queries use
//	manifestcheck istiod FILE...      check istiod Helm values that add the adapter to meshConfig.configSources
//	manifestcheck rules FILE...       print the PrometheusRule groups of rendered manifests as a Prometheus rules file
//	manifestcheck alerts FILE...      parse every alert's PromQL and print, as JSON, the metrics each one selects
//	manifestcheck selfsigned DIR      write a throwaway placeholder.crt and placeholder.key into DIR
//	manifestcheck dockerctx SRC DST   copy the docker build context of SRC (its .dockerignore applied) into DST
//	manifestcheck static FILE         fail unless FILE is a statically linked ELF executable
//
// For every Kubernetes document, `k8s` runs what the API server would run on create, minus admission webhooks:
//
//  1. strict decoding into the typed API object (unknown or duplicate fields, wrong types, bad quantities);
//  2. the structural schema the API server's server-side apply uses (generated from the same OpenAPI as
//     `kubectl explain`), on the document as written;
//  3. defaulting, conversion to the internal version, and the API server's own validation functions
//     (k8s.io/kubernetes/pkg/apis/.../validation: names, selectors against template labels, ports, probes,
//     volumes, security context, PDB and NetworkPolicy rules);
//  4. Pod Security Admission at the "restricted" level, latest version, on the pod template;
//  5. ServiceMonitor and PrometheusRule (prometheus-operator CRDs, not built in): strict decoding into the
//     operator's own Go types; every rule an alert whose expression Prometheus's PromQL parser takes, with a
//     severity, a summary and a runbook_url.
//
// It then checks the documents against each other and against the adapter's needs: selectors of Services, PDB,
// NetworkPolicy and ServiceMonitor select the pods or Service they are meant for, named ports exist, the
// listeners in config.yaml match the container ports, the debug listener is reachable by the kubelet probes,
// files named in config.yaml lie in mounted volumes, and only the headless metrics Service carries the
// monitoring port.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: manifestcheck k8s FILE... | config FILE | dashboard FILE | istiod FILE... | rules FILE... | alerts FILE... | selfsigned DIR | dockerctx SRC DST | static FILE")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "k8s":
		err = checkManifests(os.Args[2:])
	case "config":
		err = printConfig(os.Args[2])
	case "dashboard":
		err = checkDashboard(os.Args[2])
	case "istiod":
		err = checkIstiodValues(os.Args[2:])
	case "rules":
		err = printRules(os.Args[2:])
	case "alerts":
		err = printAlertMetrics(os.Args[2:])
	case "selfsigned":
		err = writeSelfSigned(os.Args[2])
	case "dockerctx":
		if len(os.Args) != 4 {
			err = fmt.Errorf("want SRC and DST")
			break
		}
		err = copyDockerContext(os.Args[2], os.Args[3])
	case "static":
		err = checkStatic(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "manifestcheck %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
