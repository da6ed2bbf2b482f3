// Package served is what the adapter serves to istiod: the kinds, their type
// URLs, the MCP envelope around each resource and its one serialization.
//
// convert builds a Resource, the adapter turns it into an Entry (Resource.Entry,
// the only place the envelope is marshalled), and the server sends Entries as
// they are. Tests, `check` and the debug dump read an Entry back with Decode.
// This package imports nothing of ours, so that convert, adapter and server
// can all depend on it and on nothing else of each other's.
package served

import (
	"slices"
	"strings"
)

// Kind is an Istio config kind this adapter produces.
type Kind string

const (
	KindServiceEntry    Kind = "ServiceEntry"
	KindWorkloadEntry   Kind = "WorkloadEntry"
	KindDestinationRule Kind = "DestinationRule"
	KindVirtualService  Kind = "VirtualService"
)

// Kinds lists every kind the adapter serves, in the order they are rendered:
// a DestinationRule after the ServiceEntry of its host, a VirtualService
// after the DestinationRules whose subsets it names.
var Kinds = []Kind{KindServiceEntry, KindWorkloadEntry, KindDestinationRule, KindVirtualService}

// Group is the API group of every served kind.
const Group = "networking.istio.io"

// The label on every served resource, whatever the sink: it marks what the
// adapter generated, for humans, for `check`, and for the Kubernetes sink's
// ownership (with its own owner label).
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "registry-adapter"
)

// Type URLs inside the MCP envelope. istiod decodes the outer Any as an MCP
// Resource whatever the request's type URL was, and the body by its own URL.
const (
	MCPResourceTypeURL = "type.googleapis.com/istio.mcp.v1alpha1.Resource"
	bodyTypeURLPrefix  = "type.googleapis.com/istio.networking.v1alpha3."
)

// KindOf maps a type URL a config-source client requests to the kind served
// for it. istiod asks networking.istio.io/v1/ServiceEntry today and
// .../v1alpha3/ServiceEntry before 1.24; the content is the same. It returns
// "" for every other type URL.
func KindOf(typeURL string) Kind {
	group, rest, ok := strings.Cut(typeURL, "/")
	if !ok || group != Group {
		return ""
	}
	k := Kind(rest[strings.LastIndexByte(rest, '/')+1:])
	if slices.Contains(Kinds, k) {
		return k
	}
	return ""
}

// bodyTypeURL is the type URL of the kind's spec inside the envelope: the
// v1alpha3 message, which every later API version shares.
func (k Kind) bodyTypeURL() string {
	switch k { // constants: a resource is built by the tens of thousands
	case KindServiceEntry:
		return bodyTypeURLPrefix + string(KindServiceEntry)
	case KindWorkloadEntry:
		return bodyTypeURLPrefix + string(KindWorkloadEntry)
	case KindDestinationRule:
		return bodyTypeURLPrefix + string(KindDestinationRule)
	case KindVirtualService:
		return bodyTypeURLPrefix + string(KindVirtualService)
	}
	return bodyTypeURLPrefix + string(k)
}

// kindOfBody is the kind of a spec type URL, or "" for another message.
func kindOfBody(typeURL string) Kind {
	k, ok := strings.CutPrefix(typeURL, bodyTypeURLPrefix)
	if !ok || !slices.Contains(Kinds, Kind(k)) {
		return ""
	}
	return Kind(k)
}
