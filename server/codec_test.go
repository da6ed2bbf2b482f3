package server

import (
	"fmt"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/registry-adapter/registry-adapter/served"
)

// cacheReply is what the server would send for typeURL now.
func cacheReply(t *testing.T, c *Cache, typeURL string) *discovery.DiscoveryResponse {
	t.Helper()
	ch := make(chan cachev3.Response, 1)
	cancel, err := c.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: typeURL}, nil, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	out, err := (<-ch).GetDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	out.Nonce = "7"
	out.ControlPlane = &core.ControlPlane{Identifier: "registry-adapter"}
	return out
}

func TestResponseCodecSharesRecords(t *testing.T) {
	c := NewCache(nil)
	var entries []served.Entry
	for i := range 50 {
		entries = append(entries, entry(t, fmt.Sprintf("ns/svc-%d", i), "1"))
	}
	c.Apply(served.KindServiceEntry, entries, nil)
	c.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/svc-3", "2")}, []string{"ns/svc-7"})
	c.MarkReady()
	codec := newResponseCodec(c.records)

	resp := cacheReply(t, c, seV1)
	got, err := codec.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(resp.Resources)+1 {
		t.Fatalf("codec returned %d buffers for %d resources: the shared records were not used", len(got), len(resp.Resources))
	}
	var decoded discovery.DiscoveryResponse
	if err := proto.Unmarshal(got.Materialize(), &decoded); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&decoded, resp) {
		t.Errorf("the shared encoding decodes to something else than the response:\n got %v\nwant %v", &decoded, resp)
	}
	want, _ := proto.Marshal(resp)
	if got.Len() != len(want) {
		t.Errorf("encoded %d bytes, proto encodes %d", got.Len(), len(want))
	}
	// Two sends of one version share the record buffers themselves.
	again, _ := codec.Marshal(cacheReply(t, c, seV1))
	if &again[1].ReadOnlyData()[0] != &got[1].ReadOnlyData()[0] {
		t.Error("two sends of one version copied the records")
	}

	// A stale snapshot, a foreign slice and other messages take the proto
	// codec's path and still encode correctly.
	c.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/svc-4", "2")}, nil)
	foreign := &discovery.DiscoveryResponse{VersionInfo: "x", TypeUrl: seV1, Resources: []*anypb.Any{entries[0].Resource}}
	for name, msg := range map[string]proto.Message{
		"stale snapshot": resp,
		"foreign slice":  foreign,
		"request":        &discovery.DiscoveryRequest{TypeUrl: seV1, VersionInfo: "1"},
		"empty response": &discovery.DiscoveryResponse{TypeUrl: weV1},
	} {
		out, err := codec.Marshal(msg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back := msg.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(out.Materialize(), back); err != nil || !proto.Equal(back, msg) {
			t.Errorf("%s: does not round-trip (%v)", name, err)
		}
	}
}

// TestReplyTakesContentWhenSent: a watch answered by a change carries the
// content and version current when the stream sends it, consistently, so a
// second change made in between goes out in the same reply under its own
// version.
func TestReplyTakesContentWhenSent(t *testing.T) {
	c := NewCache(nil)
	c.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/a", "1")}, nil)
	c.MarkReady()
	ch := make(chan cachev3.Response, 1)
	cancel, err := c.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: seV1, VersionInfo: c.Version(served.KindServiceEntry), ResponseNonce: "1"}, nil, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	c.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/b", "1")}, nil)
	resp := <-ch
	c.Apply(served.KindServiceEntry, []served.Entry{entry(t, "ns/c", "1")}, nil)

	out, err := resp.GetDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Version(served.KindServiceEntry); out.VersionInfo != want {
		t.Errorf("reply version %s, want the current %s", out.VersionInfo, want)
	}
	if v, _ := resp.GetVersion(); v != out.VersionInfo {
		t.Errorf("GetVersion %s disagrees with the reply's %s", v, out.VersionInfo)
	}
	if len(out.Resources) != 3 {
		t.Errorf("reply carries %d resources, want all 3", len(out.Resources))
	}
}
