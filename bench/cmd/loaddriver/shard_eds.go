package main

// The EDS watcher of the sharding scenario (shard.go).

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// edsWatcher is a sidecar-like xDS client of istiod asking only for the
// endpoints of a few clusters: what a proxy sees, at the cost of one small
// EDS push per change instead of a debug dump.
type edsWatcher struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc

	mu      sync.Mutex
	cond    *sync.Cond
	addrs   map[string][]string  // cluster -> endpoint addresses
	seen    map[string]time.Time // cluster -> last response carrying it
	updates int
	err     error
}

const edsTypeURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

func newEDSWatcher(addr string, clusters []string) (*edsWatcher, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	md, _ := structpb.NewStruct(map[string]any{"ISTIO_VERSION": "1.31.0", "CLUSTER_ID": "Kubernetes"})
	node := &core.Node{Id: "sidecar~127.0.0.99~shard-probe.istio-system~istio-system.svc.cluster.local", Metadata: md}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: edsTypeURL, ResourceNames: clusters}); err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	w := &edsWatcher{conn: conn, cancel: cancel, addrs: map[string][]string{}, seen: map[string]time.Time{}}
	w.cond = sync.NewCond(&w.mu)
	go func() {
		for {
			resp, err := stream.Recv()
			now := time.Now()
			if err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = err
				}
				w.cond.Broadcast()
				w.mu.Unlock()
				return
			}
			got := map[string][]string{}
			for _, a := range resp.GetResources() {
				var cla endpoint.ClusterLoadAssignment
				if err := a.UnmarshalTo(&cla); err != nil {
					continue
				}
				var addrs []string
				for _, le := range cla.GetEndpoints() {
					for _, lb := range le.GetLbEndpoints() {
						addrs = append(addrs, lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
					}
				}
				got[cla.GetClusterName()] = addrs
			}
			_ = stream.Send(&discovery.DiscoveryRequest{TypeUrl: edsTypeURL, ResourceNames: clusters,
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
			w.mu.Lock()
			for cl, a := range got {
				w.addrs[cl], w.seen[cl] = a, now
			}
			w.updates++
			w.cond.Broadcast()
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// waitInitial waits until istiod answered with endpoints for n clusters
// (the clusters of ports not added yet have none).
func (w *edsWatcher) waitInitial(n int, d time.Duration) error {
	full := func() int {
		k := 0
		for _, a := range w.addrs {
			if len(a) > 0 {
				k++
			}
		}
		return k
	}
	if err := w.wait(d, func() bool { return full() >= n }); err != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		return fmt.Errorf("EDS watcher: %d of %d clusters have endpoints: %w", full(), n, err)
	}
	return nil
}

// waitFor returns when a response first made cluster's endpoints satisfy ok
// (the response's arrival, not this goroutine's wake-up).
func (w *edsWatcher) waitFor(cluster string, ok func([]string) bool, d time.Duration) (time.Time, error) {
	if err := w.wait(d, func() bool { return ok(w.addrs[cluster]) }); err != nil {
		return time.Time{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[cluster], nil
}

func (w *edsWatcher) wait(d time.Duration, cond func() bool) error {
	timer := time.AfterFunc(d, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(d)
	w.mu.Lock()
	defer w.mu.Unlock()
	for !cond() {
		if w.err != nil {
			return w.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not seen after %s", d)
		}
		w.cond.Wait()
	}
	return nil
}

func (w *edsWatcher) close() {
	if w.cancel != nil {
		w.cancel()
		w.conn.Close()
		w.cancel = nil
	}
}
