package main

// The version-less stand-in of the istiod comparison (compare.go): an
// MCP-over-xDS relay between istiod and the adapter that passes every request
// through and every reply back with each resource's Metadata.Version emptied.
//
// It stands in for the full-state pattern that Higress's and Nacos's MCP
// servers use (every push re-sends every resource of its type, without
// resource versions). It is not their code: it serves exactly the adapter's
// resources, the same bytes apart from the version field, with the same
// timing, so the only difference istiod sees is that it cannot tell which
// resources changed. (The adapter's replies are already state of the world,
// every resource of the type in every reply; what istiod skips is the
// unchanged versions, pkg/adsc handleMCP.)

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	mcp "istio.io/api/mcp/v1alpha1"
)

type standIn struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	upstream string
	srv      *grpc.Server
	addr     string
	// stripped counts the resources relayed with their version removed.
	stripped atomic.Int64
}

func startStandIn(upstream string) (*standIn, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &standIn{upstream: upstream, addr: lis.Addr().String()}
	// istiod pings every 30 s (see ISTIOD-PROTOCOL.md); the adapter allows it.
	s.srv = grpc.NewServer(grpc.MaxRecvMsgSize(math.MaxInt32), grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
	discovery.RegisterAggregatedDiscoveryServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

func (s *standIn) stop() { s.srv.Stop() }

func (s *standIn) StreamAggregatedResources(down discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ctx, cancel := context.WithCancel(down.Context())
	defer cancel()
	conn, err := grpc.NewClient(s.upstream, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		return err
	}
	defer conn.Close()
	up, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go relay(down.Recv, up.Send, errc)
	go relay(up.Recv, func(resp *discovery.DiscoveryResponse) error {
		if err := s.strip(resp); err != nil {
			return err
		}
		return down.Send(resp)
	}, errc)
	return <-errc
}

// relay sends what recv gives until either fails, and reports that error.
func relay[T any](recv func() (T, error), send func(T) error, errc chan<- error) {
	for {
		m, err := recv()
		if err == nil {
			err = send(m)
		}
		if err != nil {
			errc <- err
			return
		}
	}
}

// strip empties Metadata.Version of every resource in place.
func (s *standIn) strip(resp *discovery.DiscoveryResponse) error {
	for i, a := range resp.GetResources() {
		var r mcp.Resource
		if err := a.UnmarshalTo(&r); err != nil {
			return fmt.Errorf("stand-in: resource %d of %s: %w", i, resp.GetTypeUrl(), err)
		}
		if r.GetMetadata() == nil || r.Metadata.Version == "" {
			continue
		}
		r.Metadata.Version = ""
		b, err := proto.Marshal(&r)
		if err != nil {
			return err
		}
		resp.Resources[i] = &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: b}
		s.stripped.Add(1)
	}
	return nil
}
