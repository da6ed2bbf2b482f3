package served

import (
	"google.golang.org/protobuf/encoding/protowire"
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
// sorted once for both sizing and writing.
type envelopeWriter struct {
	r           *Resource
	labelKeys   []string
	annKeys     []string
	metaSize    int
	tsSize      int
	bodySize    int
	totalSize   int
	bodyTypeURL string
}

func newEnvelopeWriter(r *Resource) *envelopeWriter {
	w := &envelopeWriter{r: r, labelKeys: sortedKeys(r.Labels), annKeys: sortedKeys(r.Annotations), bodyTypeURL: r.Kind.bodyTypeURL()}
	if r.createTime != nil {
		w.tsSize = sizeVarintField(tsSeconds, uint64(r.createTime.GetSeconds())) + sizeVarintField(tsNanos, uint64(int64(r.createTime.GetNanos())))
	}
	m := sizeStringField(metaName, r.Key()) + sizeStringField(metaVersion, r.Version)
	if r.createTime != nil {
		m += protowire.SizeTag(metaCreateTime) + protowire.SizeBytes(w.tsSize)
	}
	m += sizeMap(metaLabels, w.labelKeys, r.Labels) + sizeMap(metaAnnotations, w.annKeys, r.Annotations)
	w.metaSize = m
	w.bodySize = sizeStringField(anyTypeURL, w.bodyTypeURL) + sizeBytesField(anyValue, r.body)
	w.totalSize = protowire.SizeTag(resourceMetadata) + protowire.SizeBytes(m) +
		protowire.SizeTag(resourceBody) + protowire.SizeBytes(w.bodySize)
	return w
}

func (w *envelopeWriter) size() int { return w.totalSize }

// append writes the envelope as proto.Marshal with Deterministic set does.
func (w *envelopeWriter) append(b []byte) []byte {
	r := w.r
	b = protowire.AppendTag(b, resourceMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(w.metaSize))
	b = appendStringField(b, metaName, r.Key())
	if r.createTime != nil {
		b = protowire.AppendTag(b, metaCreateTime, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(w.tsSize))
		b = appendVarintField(b, tsSeconds, uint64(r.createTime.GetSeconds()))
		b = appendVarintField(b, tsNanos, uint64(int64(r.createTime.GetNanos())))
	}
	b = appendStringField(b, metaVersion, r.Version)
	b = appendMap(b, metaLabels, w.labelKeys, r.Labels)
	b = appendMap(b, metaAnnotations, w.annKeys, r.Annotations)
	b = protowire.AppendTag(b, resourceBody, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(w.bodySize))
	b = appendStringField(b, anyTypeURL, w.bodyTypeURL)
	if len(r.body) > 0 {
		b = protowire.AppendTag(b, anyValue, protowire.BytesType)
		b = protowire.AppendBytes(b, r.body)
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
