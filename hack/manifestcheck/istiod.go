package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	sigsyaml "sigs.k8s.io/yaml"
)

// adapterSource is the configSources address the chart's Service answers with its default values; with shards,
// shard i answers on adapterPort + i.
const (
	adapterSource = "xds://registry-adapter.istio-system.svc:15010"
	adapterHost   = "registry-adapter.istio-system.svc"
	adapterPort   = 15010
)

// checkIstiodValues checks istiod Helm values files that add the adapter as a config source. meshConfig is
// decoded strictly into istio.io/api's MeshConfig (unknown fields and enum values are errors), then held to what
// istiod actually does with configSources (pilot/pkg/bootstrap/configcontroller.go).
func checkIstiodValues(files []string) error {
	var errs []error
	for _, file := range files {
		if err := checkIstiodFile(file); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
		} else {
			fmt.Printf("ok %s\n", file)
		}
	}
	return errors.Join(errs...)
}

func checkIstiodFile(file string) error {
	// TLS is the default: every adapter entry carries tlsSettings, except in the one file meant for the chart's
	// tls.enabled: false.
	plaintext := strings.HasSuffix(file, "-plaintext.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var values struct {
		MeshConfig map[string]any `json:"meshConfig"`
	}
	if err := sigsyaml.UnmarshalStrict(data, &values); err != nil {
		return fmt.Errorf("want only meshConfig at the top: %w", err)
	}
	js, err := sigsyaml.Marshal(values.MeshConfig)
	if err == nil {
		js, err = sigsyaml.YAMLToJSON(js)
	}
	if err != nil {
		return err
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, mc); err != nil {
		return fmt.Errorf("meshConfig: %w", err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var k8s bool
	shards := map[int]bool{} // adapter ports listed, as offsets from adapterPort
	isAdapter := func(addr string) bool {
		host, port, err := net.SplitHostPort(strings.TrimPrefix(addr, "xds://"))
		return strings.HasPrefix(addr, "xds://") && err == nil && host == adapterHost && port != ""
	}
	for i, cs := range mc.GetConfigSources() {
		switch addr := cs.GetAddress(); {
		case addr == "k8s://":
			k8s = true
		case isAdapter(addr):
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(addr, "xds://"))
			n, err := strconv.Atoi(port)
			if err != nil || n < adapterPort || n >= adapterPort+64 {
				bad("meshConfig.configSources[%d] %s: want port %d (+ shard, up to 63)", i, addr, adapterPort)
			} else if shards[n-adapterPort] {
				bad("meshConfig.configSources[%d] %s: listed twice", i, addr)
			} else {
				shards[n-adapterPort] = true
			}
		}
		tls := cs.GetTlsSettings()
		if tls == nil {
			if isAdapter(cs.GetAddress()) && !plaintext {
				bad("meshConfig.configSources[%d] %s: no tlsSettings: TLS is the chart's default (plaintext only in *-plaintext.yaml)", i, cs.GetAddress())
			}
			continue
		}
		if plaintext {
			bad("meshConfig.configSources[%d]: tlsSettings in a plaintext file", i)
		}
		p := fmt.Sprintf("meshConfig.configSources[%d].tlsSettings", i)
		if tls.GetMode() != networkingv1alpha3.ClientTLSSettings_SIMPLE {
			bad("%s.mode %s: istiod implements only SIMPLE and silently uses plaintext otherwise", p, tls.GetMode())
		}
		if ca := tls.GetCaCertificates(); ca != "" && !strings.HasPrefix(strings.TrimSpace(ca), "-----BEGIN CERTIFICATE-----") {
			bad("%s.caCertificates: istiod wants the PEM itself here, not a file path (%q)", p, ca)
		}
		if tls.GetCaCertificates() != "" && tls.GetCredentialName() != "" {
			bad("%s: caCertificates and credentialName exclude each other", p)
		}
		if tls.GetInsecureSkipVerify().GetValue() {
			bad("%s.insecureSkipVerify: anyone could pose as the adapter", p)
		}
		if isAdapter(cs.GetAddress()) {
			found := false
			for _, san := range tls.GetSubjectAltNames() {
				found = found || san == adapterHost
			}
			if !found {
				bad("%s.subjectAltNames: want %s", p, adapterHost)
			}
			// Without sni istiod checks the certificate against the address's host, which fails for any address
			// that is not the certificate's name.
			if tls.GetSni() != adapterHost {
				bad("%s.sni: want %s", p, adapterHost)
			}
			if tls.GetCaCertificates() == "" && tls.GetCredentialName() == "" {
				bad("%s: neither credentialName nor caCertificates: istiod would trust the system roots", p)
			}
		}
	}
	if !k8s {
		bad("meshConfig.configSources: no k8s://, which silently turns off istiod's Kubernetes CRDs")
	}
	if !shards[0] {
		bad("meshConfig.configSources: no %s", adapterSource)
	}
	// Shards are the ports adapterPort..adapterPort+K-1: a gap is a shard whose hosts istiod never sees.
	for i := range len(shards) {
		if !shards[i] {
			bad("meshConfig.configSources: %d adapter shards listed but not xds://%s:%d: its share of the services would be missing", len(shards), adapterHost, adapterPort+i)
		}
	}
	return errors.Join(errs...)
}
