package kube

// A ServiceEntry carries its inline endpoints, so it grows with its
// instances, and the Kubernetes API holds two limits on it: Istio's CRD
// schema allows at most 4096 endpoints (maxEndpoints), and etcd refuses to
// store an object over its request limit (--max-request-bytes, 1.5 MiB by
// default: the API server answers "etcdserver: request is too large"). A
// service that would pass either (more than 4096 instances, or
// Config.MaxObjectBytes) is written as several ServiceEntries instead, as
// Kubernetes splits a Service's endpoints into EndpointSlices: every part has
// the same hosts, ports, addresses and the other service fields, the same
// labels, and a share of the endpoints. Every consumer merges them back:
//
//   - istiod's ServiceEntry registry merges the endpoints of every
//     ServiceEntry of one host in one namespace
//     (pilot/pkg/serviceregistry/serviceentry, mergeServicesInstancesByNamespaceHost),
//     and with identical service fields it does not matter which part gives
//     the service;
//   - ambient (ztunnel's view) keeps one service per host and namespace
//     (ambient.selectWorkloadServices) and makes a workload of every
//     endpoint of every part, each naming that service.
//
// The xDS sink has no such limit (istiod accepts config-source messages of any
// size) and serves the service whole: istiod's registry is the same through
// either sink.
//
// The first part keeps the served name, so a service that grows past the
// limit keeps its object; the others are "<name>-part-<i>". An endpoint's
// part is a hash of its address and network modulo the number of parts, so
// a change rewrites the one part it is in; the number of parts is the least
// that keeps each under both limits with room to grow (partFill,
// maxPartEndpoints), and only a change of that number moves endpoints
// between parts.

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/registry-adapter/registry-adapter/served"
)

const (
	// AnnotationPart marks a ServiceEntry written in parts: "i/n" (part i of
	// n). Every part carries the service's labels, so
	// `kubectl get serviceentries -l registry-adapter.io/service=<host>`
	// lists them all.
	AnnotationPart = "registry-adapter.io/part"
	// DefaultMaxObjectBytes is the default Config.MaxObjectBytes: 1 MiB of
	// the JSON the sink sends, below etcd's default limit of 1.5 MiB on the
	// stored object, which adds the API server's metadata (uid,
	// resourceVersion, managedFields) to it.
	DefaultMaxObjectBytes = 1 << 20
	// partFill is how full the parts are made when a service is split, so
	// that it can grow by a third before the number of parts changes.
	partFill = 0.75
	// maxEndpoints is the most endpoints a ServiceEntry may hold in the
	// Kubernetes API: Istio's CRD schema sets maxItems 4096 on
	// spec.endpoints, and the API server refuses more as invalid (measured
	// against kube-apiserver with the pinned Istio's CRDs: "spec.endpoints:
	// Too many: 24000: must have at most 4096 items"). istiod's xDS config
	// source has no such limit.
	maxEndpoints = 4096
	// maxPartEndpoints is how many endpoints a part is given when the count
	// decides the split, leaving room to grow as partFill does for bytes.
	maxPartEndpoints = maxEndpoints * 3 / 4
	// minEndpointBytes is the least an endpoint takes in the protobuf
	// encoding (tag, length, and an address field of at least one byte):
	// a resource smaller than maxEndpoints of them cannot hold too many.
	minEndpointBytes = 5
	// jsonGrowth bounds how much larger an object's JSON is than its
	// protobuf encoding, per endpoint: a field's one-byte tag becomes its
	// quoted name ("serviceAccount": 17 bytes), a string byte at worst a
	// \u00XX escape (6 bytes). A served resource whose protobuf is under
	// MaxObjectBytes/jsonGrowth fits without being rendered to know it.
	jsonGrowth = 8
)

// split returns the parts a served ServiceEntry is written as, or nil when
// it fits in one object. An error names the entry and says why it cannot be
// split (one endpoint and the service fields alone pass the limit); the
// caller then keeps it whole and sync refuses it by name.
func (s *Sink) split(e served.Entry) ([]served.Entry, error) {
	limit := s.cfg.MaxObjectBytes
	size := len(e.Resource.GetValue())
	if size <= limit/jsonGrowth && size < maxEndpoints*minEndpointBytes {
		return nil, nil // under both limits whatever it holds
	}
	res, err := served.Decode(e.Resource)
	if err != nil {
		return nil, nil // sync reports it by name
	}
	se, ok := res.Spec.(*networking.ServiceEntry)
	if !ok {
		return nil, nil
	}
	many := len(se.Endpoints) > maxEndpoints
	if !many && size <= limit/jsonGrowth {
		return nil, nil
	}
	obj, _, err := render(served.KindServiceEntry, s.cfg.Owner, e.Resource)
	if err != nil {
		return nil, nil // sync reports it by name
	}
	whole, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, nil
	}
	if !many && len(whole) <= limit {
		return nil, nil
	}
	eps, _, _ := unstructured.NestedSlice(obj.Object, "spec", "endpoints")
	if len(eps) != len(se.Endpoints) || len(eps) < 2 {
		return nil, fmt.Errorf("ServiceEntry %s: %d bytes as an object, over kubernetesSink.maxObjectBytes (%d), and its %d endpoints cannot be split",
			e.Name, len(whole), limit, len(eps))
	}
	sizes := make([]int, len(eps))
	total := 0
	for i, ep := range eps {
		b, err := json.Marshal(ep)
		if err != nil {
			return nil, nil
		}
		sizes[i] = len(b) + 1 // and its comma
		total += sizes[i]
	}
	// What every part carries besides its endpoints: the object without
	// them, the part annotation ("key":"i/n",) and the longer name of the
	// parts after the first ("-part-i"); i and n have at most as many
	// digits as the number of endpoints.
	digits := len(strconv.Itoa(len(eps)))
	fixed := len(whole) - total + len(AnnotationPart) + 2*digits + 7 + len("-part-") + digits
	room := limit - fixed
	for _, sz := range sizes {
		if sz > room {
			return nil, fmt.Errorf("ServiceEntry %s: %d bytes as an object, over kubernetesSink.maxObjectBytes (%d), and one endpoint with the service fields alone takes %d",
				e.Name, len(whole), limit, fixed+sz)
		}
	}
	hashes := make([]uint64, len(se.Endpoints))
	for i, ep := range se.Endpoints {
		hashes[i] = xxhash.Sum64String(ep.GetAddress() + "/" + ep.GetNetwork())
	}
	fill := int(float64(room) * partFill)
	n := max(2, (total+fill-1)/fill, (len(eps)+maxPartEndpoints-1)/maxPartEndpoints)
	var buckets [][]int
	for ; n < len(eps); n++ {
		buckets = make([][]int, n)
		used := make([]int, n)
		fits := true
		for i, h := range hashes {
			b := int(h % uint64(n))
			buckets[b] = append(buckets[b], i)
			used[b] += sizes[i]
			if used[b] > room || len(buckets[b]) > maxEndpoints {
				fits = false
			}
		}
		if fits {
			break
		}
		// Each added part lowers every share.
	}
	if n >= len(eps) {
		// Only endpoints of one address (the same hash) too large to share
		// a part get here: one endpoint per part, which fits (checked above).
		n = len(eps)
		buckets = make([][]int, n)
		for i := range buckets {
			buckets[i] = []int{i}
		}
	}
	names := s.partNames(e.Name, n)
	// The service fields, copied once; the parts share the decoded
	// endpoints, which nothing modifies.
	all := se.Endpoints
	se.Endpoints = nil
	shell := proto.CloneOf(se)
	se.Endpoints = all
	out := make([]served.Entry, 0, n)
	for i, idx := range buckets {
		spec := proto.CloneOf(shell)
		spec.Endpoints = make([]*networking.WorkloadEntry, len(idx))
		for j, k := range idx {
			spec.Endpoints[j] = se.Endpoints[k]
		}
		ann := maps.Clone(res.Annotations)
		if ann == nil {
			ann = map[string]string{}
		}
		ann[AnnotationPart] = fmt.Sprintf("%d/%d", i+1, n)
		ns, name := splitName(names[i])
		part, err := served.New(served.KindServiceEntry, ns, name, res.Labels, ann, spec, res.CreateTime()).Entry()
		if err != nil {
			return nil, fmt.Errorf("ServiceEntry %s: part %d: %w", e.Name, i+1, err)
		}
		out = append(out, part)
	}
	return out, nil
}

// partNames are the names of a split entry's n parts: its own, then
// "<name>-part-<i>" (shortened with a hash of the name to fit a Kubernetes
// name), skipping any name the desired state holds for another entry.
// s.mu is held.
func (s *Sink) partNames(parent string, n int) []string {
	ns, name := splitName(parent)
	out := []string{parent}
	for i := 2; len(out) < n; i++ {
		suffix := "-part-" + strconv.Itoa(i)
		base := name
		if len(base)+len(suffix) > maxNameLen {
			h := strconv.FormatUint(xxhash.Sum64String(name), 16)
			base = trimDots(name[:maxNameLen-len(suffix)-1-len(h)]) + "-" + h
		}
		candidate := ns + "/" + base + suffix
		if w, ok := s.desired[key{served.KindServiceEntry, candidate}]; ok && w.parent != parent {
			continue // a served entry's, or another service's part
		}
		out = append(out, candidate)
	}
	return out
}

// maxNameLen is the longest Kubernetes object name (a DNS-1123 subdomain).
const maxNameLen = 253

// trimDots drops the dots and dashes a cut name may end with, which a
// subdomain cannot have before the "-" that follows.
func trimDots(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '.' || s[len(s)-1] == '-') {
		s = s[:len(s)-1]
	}
	return s
}
