package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

// fieldsConfig is one service whose instances differ in every per-instance
// field a WorkloadEntry carries: labels, locality, weight, network, service
// account (setServiceAccount on) and a target port of its own.
const fieldsConfig = `
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 200ms}
output: {setServiceAccount: true}
sources:
- name: vms
  static:
    services:
    - name: billing
      host: billing.fields.example.com
      ports: [{number: 8080, protocol: http}, {number: 5432, protocol: tcp}]
      instances:
      - {id: b-1, address: 10.0.3.10, labels: {version: v1}, locality: us-east-1/us-east-1a, weight: 3, network: vpc-1, serviceAccount: billing}
      - {id: b-2, address: 10.0.3.11, ports: {8080: 18080}, labels: {version: v2}, locality: us-east-1/us-east-1b/rack-7, weight: 50, network: vpc-2, serviceAccount: billing-canary}
      - {id: b-3, address: 10.0.3.12, labels: {version: v2}}
`

// fieldsSubsets is a DestinationRule's subsets for the service: labels reach
// a sidecar only through them.
var fieldsSubsets = fidelity.Subsets{"v1": {"version": "v1"}, "v2": {"version": "v2"}}

const fieldsDestinationRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: billing-subsets, namespace: istio-system}
spec:
  host: billing.fields.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

// fieldsWant is fieldsConfig written out by hand as istiod must hold it.
func fieldsWant() fidelity.View {
	s := placed(&fidelity.Service{Host: "billing.fields.example.com",
		Ports:     map[string]fidelity.Port{"http-8080": {Number: 8080, Protocol: "HTTP"}, "tcp-5432": {Number: 5432, Protocol: "TCP"}},
		Endpoints: map[string]fidelity.Endpoint{}})
	const sa = "ns/registry-adapter-entries/sa/"
	for _, e := range []fidelity.Endpoint{
		{Address: "10.0.3.10", Port: 8080, Labels: map[string]string{"version": "v1"}, Locality: "us-east-1/us-east-1a", Weight: 3, Network: "vpc-1", ServiceAccount: sa + "billing"},
		{Address: "10.0.3.11", Port: 18080, Labels: map[string]string{"version": "v2"}, Locality: "us-east-1/us-east-1b/rack-7", Weight: 50, Network: "vpc-2", ServiceAccount: sa + "billing-canary"},
		{Address: "10.0.3.12", Port: 8080, Labels: map[string]string{"version": "v2"}},
	} {
		e.PortName = "http-8080"
		s.Endpoints[e.Address+"/http-8080"] = e
		e.PortName, e.Port = "tcp-5432", 5432
		s.Endpoints[e.Address+"/tcp-5432"] = e
	}
	return expect(s)
}

// TestSidecarGetsEveryInstanceField: every per-instance field survives each
// output mode, checked by hand in istiod's registry (labels, locality,
// weight, network, service account, target port) and field by field in what
// a sidecar receives: locality in the LocalityLbEndpoints, weight as
// load_balancing_weight, labels through a DestinationRule's subsets (given to
// istiod from a file, fs://), service accounts among the identities the
// cluster's Istio mutual TLS verifies.
func TestSidecarGetsEveryInstanceField(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, mode string) {
		a := startAdapter(t, withMode(fieldsConfig, mode), 0)
		rules := t.TempDir()
		if err := os.WriteFile(filepath.Join(rules, "destinationrule.yaml"), []byte(fieldsDestinationRule), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startIstiod(t, meshFor(a.xdsAddr)+"- address: fs://"+rules+"\n")
		p.waitReady(t)
		want := fieldsWant()
		eventually(t, 30*time.Second, "istiod and a sidecar hold every field", func() error {
			if err := holds(t, a, p, want); err != nil {
				return err
			}
			px, err := p.sidecar(t)
			if err != nil {
				return err
			}
			if d := fidelity.DiffSidecarEndpoints(want, px.View(), fieldsSubsets); len(d) > 0 {
				return fmt.Errorf("a sidecar's load assignments differ:\n%s", strings.Join(d, "\n"))
			}
			return nil
		})
	})
}
