package fidelity

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// TypeAddress is what ztunnel asks istiod for over delta xDS: one resource
// per workload and per service (istio.io/istio pkg/workloadapi).
const TypeAddress = "type.googleapis.com/istio.workload.Address"

// ZtunnelView is what istiod gives an ambient node's ztunnel: the hostnames
// of the services, and the workloads by name.
type ZtunnelView struct {
	Services  map[string][]string // hostname -> addresses
	Workloads map[string][]string // namespace/name -> addresses
}

// Ztunnel asks istiod once, as a ztunnel does (delta xDS, wildcard), what an
// ambient data plane knows, and returns the first answer. cfg's Namespace is
// ztunnel's (default istio-system).
func Ztunnel(ctx context.Context, cfg ProxyConfig) (ZtunnelView, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "istio-system"
	}
	cfg.setDefaults()
	opts := cfg.dialOptions()
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return ZtunnelView{}, fmt.Errorf("fidelity: xDS client for %s: %w", cfg.Address, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return ZtunnelView{}, fmt.Errorf("fidelity: delta xDS stream to %s: %w", cfg.Address, err)
	}
	meta, err := structpb.NewStruct(map[string]any{"NAMESPACE": cfg.Namespace, "CLUSTER_ID": cfg.ClusterID, "INSTANCE_IPS": cfg.IP})
	if err != nil {
		return ZtunnelView{}, err
	}
	// istiod reads the proxy type "ztunnel" from the node ID; the Address
	// type is answered for it alone.
	node := &core.Node{Id: fmt.Sprintf("ztunnel~%s~ztunnel.%s~%s.svc.cluster.local", cfg.IP, cfg.Namespace, cfg.Namespace), Metadata: meta}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: TypeAddress, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		return ZtunnelView{}, fmt.Errorf("fidelity: delta xDS request to %s: %w", cfg.Address, err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return ZtunnelView{}, fmt.Errorf("fidelity: delta xDS stream from istiod at %s: %w", cfg.Address, err)
		}
		if resp.TypeUrl != TypeAddress {
			continue
		}
		v := ZtunnelView{Services: map[string][]string{}, Workloads: map[string][]string{}}
		for _, r := range resp.Resources {
			if r.GetResource() == nil {
				continue
			}
			if err := decodeAddress(r.GetResource().GetValue(), v); err != nil {
				return ZtunnelView{}, fmt.Errorf("fidelity: decode ztunnel resource %s: %w", r.Name, err)
			}
		}
		return v, nil
	}
}

// decodeAddress reads istio.workload.Address (pkg/workloadapi/workload.proto):
//
//	message Address { oneof type { Workload workload = 1; Service service = 2; } }
//	message Workload { string name = 1; string namespace = 2; repeated bytes addresses = 3; ... }
//	message Service { string name = 1; string namespace = 2; string hostname = 3;
//	                  repeated NetworkAddress addresses = 4; ... }
//	message NetworkAddress { string network = 1; bytes address = 2; }
//
// with protowire, for the reason given at decodeNameTable.
func decodeAddress(b []byte, v ZtunnelView) error {
	return fields(b, func(num protowire.Number, msg []byte) error {
		var name, ns, hostname string
		var addrs []string
		err := fields(msg, func(f protowire.Number, val []byte) error {
			switch {
			case f == 1:
				name = string(val)
			case f == 2:
				ns = string(val)
			case f == 3 && num == 2:
				hostname = string(val)
			case f == 3 && num == 1:
				addrs = append(addrs, ipString(val))
			case f == 4 && num == 2:
				return fields(val, func(g protowire.Number, a []byte) error {
					if g == 2 {
						addrs = append(addrs, ipString(a))
					}
					return nil
				})
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.Sort(addrs)
		switch num {
		case 1:
			v.Workloads[ns+"/"+name] = addrs
		case 2:
			v.Services[hostname] = addrs
		}
		return nil
	})
}

func ipString(b []byte) string {
	if a, ok := netip.AddrFromSlice(b); ok {
		return a.String()
	}
	return fmt.Sprintf("%x", b)
}

// DiffZtunnel lists the hosts of want that an ambient data plane does not
// know.
func DiffZtunnel(want View, got ZtunnelView) []string {
	var out []string
	for _, host := range want.Hosts() {
		if _, ok := got.Services[host]; !ok {
			out = append(out, fmt.Sprintf("host %s: not in what istiod gives ztunnel (ambient)", host))
		}
	}
	return out
}
