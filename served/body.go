package served

import (
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// The bodies of the two kinds served by the tens of thousands, ServiceEntry
// and WorkloadEntry, are written by hand like the envelope (envelope.go):
// protobuf's deterministic marshal walks every endpoint's label map through
// reflection, copying each key and value twice and sorting them, which was
// a tenth of a cold sync's CPU and a sixth of its garbage at 50k services
// (measured, BENCHMARKS.md). The bytes are those of proto.Marshal with
// Deterministic set: fields in number order, proto3 zero values left out,
// map entries sorted by key with both key and value written.
// TestBodyMatchesProto holds them to it for random specs, and
// TestBodyCoversEveryField fails when istio.io/api adds a field this file
// does not write. Anything the hand encoder does not cover (another kind, a
// nil element, unknown fields, a string that is not UTF-8, which proto.Marshal
// refuses) goes through proto.Marshal as before.

// Field numbers of istio.networking.v1alpha3 (service_entry.proto,
// workload_entry.proto, sidecar.proto's WorkloadSelector).
const (
	seHosts            = 1
	seAddresses        = 2
	sePorts            = 3
	seLocation         = 4
	seResolution       = 5
	seEndpoints        = 6
	seExportTo         = 7
	seSubjectAltNames  = 8
	seWorkloadSelector = 9

	portNumber     = 1
	portProtocol   = 2
	portName       = 3
	portTargetPort = 4

	weAddress        = 1
	wePorts          = 2
	weLabels         = 3
	weNetwork        = 4
	weLocality       = 5
	weWeight         = 6
	weServiceAccount = 7

	selectorLabels = 1
)

// bodySize is the size of spec's body as the hand encoder writes it, and
// whether it covers spec at all.
func bodySize(spec proto.Message) (int, bool) {
	switch m := spec.(type) {
	case *networking.ServiceEntry:
		return serviceEntrySize(m)
	case *networking.WorkloadEntry:
		return workloadEntrySize(m)
	}
	return 0, false
}

// appendBody appends spec's body; only for a spec bodySize covers.
func appendBody(b []byte, spec proto.Message) []byte {
	switch m := spec.(type) {
	case *networking.ServiceEntry:
		return appendServiceEntry(b, m)
	case *networking.WorkloadEntry:
		return appendWorkloadEntry(b, m)
	}
	return b
}

func serviceEntrySize(se *networking.ServiceEntry) (int, bool) {
	if se == nil || len(se.ProtoReflect().GetUnknown()) > 0 {
		return 0, false
	}
	n := 0
	for _, list := range [...]struct {
		num protowire.Number
		ss  []string
	}{{seHosts, se.Hosts}, {seAddresses, se.Addresses}, {seExportTo, se.ExportTo}, {seSubjectAltNames, se.SubjectAltNames}} {
		for _, s := range list.ss {
			if !utf8.ValidString(s) {
				return 0, false
			}
			n += protowire.SizeTag(list.num) + protowire.SizeBytes(len(s))
		}
	}
	for _, p := range se.Ports {
		size, ok := servicePortSize(p)
		if !ok {
			return 0, false
		}
		n += protowire.SizeTag(sePorts) + protowire.SizeBytes(size)
	}
	n += sizeVarintField(seLocation, uint64(int64(se.Location))) + sizeVarintField(seResolution, uint64(int64(se.Resolution)))
	for _, e := range se.Endpoints {
		size, ok := workloadEntrySize(e)
		if !ok {
			return 0, false
		}
		n += protowire.SizeTag(seEndpoints) + protowire.SizeBytes(size)
	}
	if ws := se.WorkloadSelector; ws != nil {
		if len(ws.ProtoReflect().GetUnknown()) > 0 {
			return 0, false
		}
		size, ok := stringMapSize(selectorLabels, ws.Labels)
		if !ok {
			return 0, false
		}
		n += protowire.SizeTag(seWorkloadSelector) + protowire.SizeBytes(size)
	}
	return n, true
}

func appendServiceEntry(b []byte, se *networking.ServiceEntry) []byte {
	b = appendStrings(b, seHosts, se.Hosts)
	b = appendStrings(b, seAddresses, se.Addresses)
	for _, p := range se.Ports {
		size, _ := servicePortSize(p)
		b = protowire.AppendTag(b, sePorts, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendVarintField(b, portNumber, uint64(p.Number))
		b = appendStringField(b, portProtocol, p.Protocol)
		b = appendStringField(b, portName, p.Name)
		b = appendVarintField(b, portTargetPort, uint64(p.TargetPort))
	}
	b = appendVarintField(b, seLocation, uint64(int64(se.Location)))
	b = appendVarintField(b, seResolution, uint64(int64(se.Resolution)))
	for _, e := range se.Endpoints {
		size, _ := workloadEntrySize(e)
		b = protowire.AppendTag(b, seEndpoints, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendWorkloadEntry(b, e)
	}
	b = appendStrings(b, seExportTo, se.ExportTo)
	b = appendStrings(b, seSubjectAltNames, se.SubjectAltNames)
	if ws := se.WorkloadSelector; ws != nil {
		size, _ := stringMapSize(selectorLabels, ws.Labels)
		b = protowire.AppendTag(b, seWorkloadSelector, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendStringMap(b, selectorLabels, ws.Labels)
	}
	return b
}

func servicePortSize(p *networking.ServicePort) (int, bool) {
	if p == nil || len(p.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(p.Protocol) || !utf8.ValidString(p.Name) {
		return 0, false
	}
	return sizeVarintField(portNumber, uint64(p.Number)) + sizeStringField(portProtocol, p.Protocol) +
		sizeStringField(portName, p.Name) + sizeVarintField(portTargetPort, uint64(p.TargetPort)), true
}

func workloadEntrySize(e *networking.WorkloadEntry) (int, bool) {
	if e == nil || len(e.ProtoReflect().GetUnknown()) > 0 {
		return 0, false
	}
	for _, s := range [...]string{e.Address, e.Network, e.Locality, e.ServiceAccount} {
		if !utf8.ValidString(s) {
			return 0, false
		}
	}
	n := sizeStringField(weAddress, e.Address) + sizeStringField(weNetwork, e.Network) +
		sizeStringField(weLocality, e.Locality) + sizeVarintField(weWeight, uint64(e.Weight)) +
		sizeStringField(weServiceAccount, e.ServiceAccount)
	for k, v := range e.Ports {
		if !utf8.ValidString(k) {
			return 0, false
		}
		n += protowire.SizeTag(wePorts) + protowire.SizeBytes(portEntrySize(k, v))
	}
	labels, ok := stringMapSize(weLabels, e.Labels)
	return n + labels, ok
}

func appendWorkloadEntry(b []byte, e *networking.WorkloadEntry) []byte {
	b = appendStringField(b, weAddress, e.Address)
	if len(e.Ports) > 0 {
		var small [8]string
		for _, k := range sortedKeysInto(small[:0], e.Ports) {
			v := e.Ports[k]
			b = protowire.AppendTag(b, wePorts, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(portEntrySize(k, v)))
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, k)
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	b = appendStringMap(b, weLabels, e.Labels)
	b = appendStringField(b, weNetwork, e.Network)
	b = appendStringField(b, weLocality, e.Locality)
	b = appendVarintField(b, weWeight, uint64(e.Weight))
	return appendStringField(b, weServiceAccount, e.ServiceAccount)
}

// portEntrySize is a map<string, uint32> entry's size: both fields always.
func portEntrySize(k string, v uint32) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeVarint(uint64(v))
}

func stringMapSize(num protowire.Number, m map[string]string) (int, bool) {
	n := 0
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return 0, false
		}
		n += protowire.SizeTag(num) + protowire.SizeBytes(mapEntrySize(k, v))
	}
	return n, true
}

func appendStringMap(b []byte, num protowire.Number, m map[string]string) []byte {
	if len(m) == 0 {
		return b
	}
	var small [8]string
	return appendMap(b, num, sortedKeysInto(small[:0], m), m)
}

// appendStrings writes a repeated string field; an empty element is still
// an element.
func appendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

// sortedKeysInto appends m's keys to dst and sorts them: with dst on the
// caller's stack, a map of a few keys (an endpoint's labels, as almost every
// registry has them) is sorted without allocating.
func sortedKeysInto[V any](dst []string, m map[string]V) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}
