package served

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The MCP envelope (istio.mcp.v1alpha1.Resource) is written by hand: protobuf's
// generic marshal walks the metadata's label and annotation maps through
// reflection, allocating for every key and value twice (once to size, once to
// write), which was a tenth of a cold sync's CPU at 50k services (measured,
// BENCHMARKS.md). The fields and their numbers are those of
// istio.io/api/mcp/v1alpha1 (metadata.proto, resource.proto);
// TestEnvelopeMatchesProto holds the bytes to proto.Marshal's deterministic
// output.
const (
	resourceMetadata = 1 // Resource.metadata
	resourceBody     = 2 // Resource.body
	metaName         = 1 // Metadata.name
	metaCreateTime   = 2
	metaVersion      = 3
	metaLabels       = 4
	metaAnnotations  = 5
	tsSeconds        = 1 // google.protobuf.Timestamp
	tsNanos          = 2
	anyTypeURL       = 1 // google.protobuf.Any
	anyValue         = 2
)

// envelopeWriter holds what the envelope is made of, with the maps' keys
// sorted once for sizing, hashing and writing.
type envelopeWriter struct {
	key, version string
	createTime   *timestamppb.Timestamp
	labels, ann  map[string]string
	labelKeys    []string
	annKeys      []string
	metaSize     int
	tsSize       int
	bodyLen      int // the body's bytes
	bodySize     int // the Any around them
	totalSize    int
	bodyTypeURL  string
}

func newEnvelopeWriter(r *Resource) *envelopeWriter {
	w := &envelopeWriter{key: r.Key(), version: r.Version, createTime: r.createTime, labels: r.Labels, ann: r.Annotations,
		labelKeys: sortedKeys(r.Labels), annKeys: sortedKeys(r.Annotations), bodyTypeURL: r.Kind.bodyTypeURL()}
	w.measure(len(r.body))
	return w
}

// measure sizes the envelope of a body of bodyLen bytes.
func (w *envelopeWriter) measure(bodyLen int) {
	w.tsSize = 0
	if w.createTime != nil {
		w.tsSize = sizeVarintField(tsSeconds, uint64(w.createTime.GetSeconds())) + sizeVarintField(tsNanos, uint64(int64(w.createTime.GetNanos())))
	}
	m := sizeStringField(metaName, w.key) + sizeStringField(metaVersion, w.version)
	if w.createTime != nil {
		m += protowire.SizeTag(metaCreateTime) + protowire.SizeBytes(w.tsSize)
	}
	m += sizeMap(metaLabels, w.labelKeys, w.labels) + sizeMap(metaAnnotations, w.annKeys, w.ann)
	w.metaSize = m
	w.bodyLen = bodyLen
	w.bodySize = sizeStringField(anyTypeURL, w.bodyTypeURL)
	if bodyLen > 0 {
		w.bodySize += protowire.SizeTag(anyValue) + protowire.SizeBytes(bodyLen)
	}
	w.totalSize = protowire.SizeTag(resourceMetadata) + protowire.SizeBytes(m) +
		protowire.SizeTag(resourceBody) + protowire.SizeBytes(w.bodySize)
}

func (w *envelopeWriter) size() int { return w.totalSize }

// headSize is the size of what precedes the body's bytes in the envelope.
func (w *envelopeWriter) headSize() int { return w.totalSize - w.bodyLen }

// append writes the envelope of body as proto.Marshal with Deterministic
// set does.
func (w *envelopeWriter) append(b, body []byte) []byte {
	return append(w.appendHead(b), body...)
}

// appendHead writes the envelope up to the body's bytes, which follow it.
func (w *envelopeWriter) appendHead(b []byte) []byte {
	b = protowire.AppendTag(b, resourceMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(w.metaSize))
	b = appendStringField(b, metaName, w.key)
	if w.createTime != nil {
		b = protowire.AppendTag(b, metaCreateTime, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(w.tsSize))
		b = appendVarintField(b, tsSeconds, uint64(w.createTime.GetSeconds()))
		b = appendVarintField(b, tsNanos, uint64(int64(w.createTime.GetNanos())))
	}
	b = appendStringField(b, metaVersion, w.version)
	b = appendMap(b, metaLabels, w.labelKeys, w.labels)
	b = appendMap(b, metaAnnotations, w.annKeys, w.ann)
	b = protowire.AppendTag(b, resourceBody, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(w.bodySize))
	b = appendStringField(b, anyTypeURL, w.bodyTypeURL)
	if w.bodyLen > 0 {
		b = protowire.AppendTag(b, anyValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(w.bodyLen))
	}
	return b
}

// Proto3 scalars are left out when zero; map entries always carry both their
// key and value.

func sizeStringField(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func sizeBytesField(num protowire.Number, b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(b))
}

func sizeVarintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func mapEntrySize(k, v string) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
}

func sizeMap(num protowire.Number, keys []string, m map[string]string) int {
	n := 0
	for _, k := range keys {
		n += protowire.SizeTag(num) + protowire.SizeBytes(mapEntrySize(k, m[k]))
	}
	return n
}

func appendMap(b []byte, num protowire.Number, keys []string, m map[string]string) []byte {
	for _, k := range keys {
		v := m[k]
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(mapEntrySize(k, v)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}
