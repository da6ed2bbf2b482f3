package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

const workloadAddressType = "type.googleapis.com/istio.workload.Address"

// ztunnelView asks istiod over delta xDS what a ztunnel receives: a wildcard
// subscription to istio.workload.Address. It returns the resource names and
// their serialized bodies (the workload API's types are not a dependency of
// this module; names and raw addresses are enough to find what the sink wrote).
func ztunnelView(ctx context.Context, grpcAddr string) ([]string, [][]byte, error) {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, nil, err
	}
	meta, _ := structpb.NewStruct(map[string]any{"CLUSTER_ID": "Kubernetes", "NAMESPACE": "istio-system"})
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{
		Node:    &core.Node{Id: "ztunnel~10.0.0.9~ztunnel-e2e.istio-system~istio-system.svc.cluster.local", Metadata: meta},
		TypeUrl: workloadAddressType,
	}); err != nil {
		return nil, nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var bodies [][]byte
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
		bodies = append(bodies, r.GetResource().GetValue())
	}
	return names, bodies, nil
}

// TestKubeSinkAmbientZtunnel: with ambient on, istiod's ambient index reads
// ServiceEntries and WorkloadEntries only from Kubernetes informers, so the
// xDS sink's resources never reach a ztunnel. Those the Kubernetes sink
// writes do: the service by host and each instance by address.
func TestKubeSinkAmbientZtunnel(t *testing.T) {
	installIstioCRDs(t)
	const ns = "kube-sink-ambient"
	kubeNamespace(t, ns)
	a := startAdapter(t, fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
output: {namespace: %s, mode: workloadentry}
sink: kubernetes
kubernetesSink:
  kubeconfig: %q
  owner: e2e-ambient
  leaderElection: {enabled: false}
sources:
- name: vms
  static:
    services:
    - name: pay
      host: pay.vms.example.com
      ports: [{number: 8443, protocol: tcp}]
      instances:
      - {id: pay-1, address: 10.9.0.1}
      - {id: pay-2, address: 10.9.0.2}
`, ns, kubeconfig), 0)
	_ = a
	runDir := t.TempDir()
	mesh := filepath.Join(runDir, "mesh-in.yaml")
	if err := os.WriteFile(mesh, []byte(meshK8sOnly), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launchIstiod(t, runDir, []string{"PILOT_ENABLE_AMBIENT=true"}, mesh)
	if err != nil {
		t.Fatal(err)
	}
	p.waitReady(t)
	env, err := os.ReadFile(filepath.Join(runDir, "istiod.env"))
	if err != nil {
		t.Fatal(err)
	}
	var grpcAddr string
	for _, kv := range parseExports(string(env)) {
		if v, ok := strings.CutPrefix(kv, "ISTIOD_GRPC_ADDR="); ok {
			grpcAddr = v
		}
	}
	eventually(t, 60*time.Second, "a ztunnel receives the sink's service and both workloads", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		names, bodies, err := ztunnelView(ctx, grpcAddr)
		if err != nil {
			return err
		}
		var service bool
		workloads := map[string]bool{}
		for i, n := range names {
			if strings.Contains(n, "pay.vms.example.com") {
				service = true
			}
			for _, ip := range [][]byte{{10, 9, 0, 1}, {10, 9, 0, 2}} {
				if strings.Contains(n, "WorkloadEntry") && bytes.Contains(bodies[i], ip) {
					workloads[fmt.Sprint(ip)] = true
				}
			}
		}
		if !service || len(workloads) != 2 {
			return fmt.Errorf("service %v, workloads %v; addresses: %v", service, workloads, names)
		}
		t.Logf("ztunnel view (%d addresses): %v", len(names), names)
		return nil
	})
}
