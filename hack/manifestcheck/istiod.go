package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	sigsyaml "sigs.k8s.io/yaml"
)

// adapterSource is the configSources address the chart's Service answers with its default values.
const (
	adapterSource = "xds://registry-adapter.istio-system.svc:15010"
	adapterHost   = "registry-adapter.istio-system.svc"
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
	var k8s, adapter bool
	for i, cs := range mc.GetConfigSources() {
		switch cs.GetAddress() {
		case "k8s://":
			k8s = true
		case adapterSource:
			adapter = true
		}
		tls := cs.GetTlsSettings()
		if tls == nil {
			continue
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
		if cs.GetAddress() == adapterSource {
			found := false
			for _, san := range tls.GetSubjectAltNames() {
				found = found || san == adapterHost
			}
			if !found {
				bad("%s.subjectAltNames: want %s", p, adapterHost)
			}
		}
	}
	if !k8s {
		bad("meshConfig.configSources: no k8s://, which silently turns off istiod's Kubernetes CRDs")
	}
	if !adapter {
		bad("meshConfig.configSources: no %s", adapterSource)
	}
	return errors.Join(errs...)
}
