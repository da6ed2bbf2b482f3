package server

import (
	"regexp"
	"strings"
	"unicode/utf8"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/registry-adapter/registry-adapter/served"
)

// What one xDS client can make the server hold. istiod presents no
// credentials (see TLSConfig), so anything that reaches the port is a client;
// these limits bound what each one costs, far above what istiod uses. A
// request beyond one ends its stream with an error that names the limit,
// before go-control-plane creates any watch for it: go-control-plane keeps a
// watch per requested type for the stream's life, so "ignoring" a request
// would still leave state behind, and istiod never sends such a request.
const (
	// maxTypesPerStream bounds the type URLs one stream may ask for: each is
	// a watch and a TypeState for the stream's life. istiod asks for 16
	// (MeshConfig and the 15 types of Istio's collections.Pilot).
	maxTypesPerStream = 64
	// maxTypeURLLen bounds a type URL; istiod's longest is 46 bytes.
	maxTypeURLLen = 128
	// maxResourceNameLen bounds one resource name a client subscribes to:
	// an Istio name is namespace/name, at most 63+1+253 bytes.
	maxResourceNameLen = 512
	// maxNameBytesPerStream bounds the resource names one stream holds
	// subscribed (SotW resource_names, delta subscriptions), over all its
	// types. istiod subscribes by wildcard and names none.
	maxNameBytesPerStream = 64 << 10
	// maxInitialVersions bounds a delta stream's initial_resource_versions
	// for one type: a reconnecting wildcard client sends one per resource it
	// holds, so this is above the 100k resources the adapter is sized for.
	// go-control-plane keeps them only until the type's first reply.
	maxInitialVersions = 1 << 18
	// maxClientString bounds each client-chosen string the server keeps or
	// uses as a metric label: node id, Istio version and revision. istiod's
	// node id is about 100 bytes.
	maxClientString = 128
	// maxNackMessage bounds a NACK's error detail kept for /debug/clients.
	maxNackMessage = 1024

	// DefaultMaxConnections is server.maxConnections' default, per listener:
	// each istiod replica holds one connection per listener.
	DefaultMaxConnections = 100
	// DefaultMaxConcurrentStreams is server.maxConcurrentStreams' default:
	// istiod opens one stream per connection.
	DefaultMaxConcurrentStreams = 8
)

// Reasons a request is refused, the values of the refused metric's label.
const (
	refusedTypeURL         = "type_url"
	refusedTypes           = "types"
	refusedResourceNames   = "resource_names"
	refusedInitialVersions = "initial_versions"
)

// requestableType is what istiod's config-source client may ask for: one
// type URL per config kind, "group/version/Kind" (Istio's pkg/adsc
// ConfigInitialRequests: core/v1alpha1/MeshConfig, then collections.Pilot,
// whose groups are networking, security, telemetry and extensions.istio.io).
// Any *.istio.io group and any Kubernetes-style group (*.k8s.io, *.x-k8s.io,
// as the Gateway API's) match, so a kind a future istiod adds still gets its
// empty answer and istiod still becomes ready; everything else (Envoy's
// type.googleapis.com URLs, garbage) is refused.
var requestableType = regexp.MustCompile(
	`^(core|([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+(istio\.io|k8s\.io|x-k8s\.io))/v[0-9]+((alpha|beta)[0-9]+)?/[A-Z][A-Za-z0-9]*$`)

// checkTypeURL refuses a type URL no istiod asks for.
func checkTypeURL(typeURL string) error {
	if len(typeURL) > maxTypeURLLen || !requestableType.MatchString(typeURL) {
		return status.Errorf(codes.InvalidArgument,
			"type URL %q is not an Istio config type (group/version/Kind) this server answers", truncate(typeURL, 64))
	}
	return nil
}

// knownTypes are the type URLs a current istiod asks for: they are metric
// label values as they are. Any other type URL (a served kind under an older
// version, such as networking.istio.io/v1alpha3/ServiceEntry, also keeps its
// own) is counted as "other", so that no client can add label values.
var knownTypes = map[string]bool{
	"core/v1alpha1/MeshConfig":                      true,
	"networking.istio.io/v1/DestinationRule":        true,
	"networking.istio.io/v1/Gateway":                true,
	"networking.istio.io/v1/ServiceEntry":           true,
	"networking.istio.io/v1/Sidecar":                true,
	"networking.istio.io/v1/VirtualService":         true,
	"networking.istio.io/v1/WorkloadEntry":          true,
	"networking.istio.io/v1/WorkloadGroup":          true,
	"networking.istio.io/v1alpha3/EnvoyFilter":      true,
	"networking.istio.io/v1beta1/ProxyConfig":       true,
	"security.istio.io/v1/AuthorizationPolicy":      true,
	"security.istio.io/v1/PeerAuthentication":       true,
	"security.istio.io/v1/RequestAuthentication":    true,
	"telemetry.istio.io/v1/Telemetry":               true,
	"extensions.istio.io/v1alpha1/TrafficExtension": true,
	"extensions.istio.io/v1alpha1/WasmPlugin":       true,
}

// servedVersions are the API versions under which a served kind keeps its
// own label value (istiod before 1.24 asked v1alpha3).
var servedVersions = []string{"v1", "v1beta1", "v1alpha3"}

// otherType is the label value of every type URL that is not known.
const otherType = "other"

// typeLabel is the metric label value of a type URL: one of a fixed set.
func typeLabel(typeURL string) string {
	if knownTypes[typeURL] {
		return typeURL
	}
	if k := served.KindOf(typeURL); k != "" {
		for _, v := range servedVersions {
			if typeURL == served.Group+"/"+v+"/"+string(k) {
				return typeURL
			}
		}
	}
	return otherType
}

// clientString bounds a client-chosen string for keeping, logging and
// labelling: valid UTF-8 (a label value must be), at most maxClientString
// bytes.
func clientString(s string) string {
	return truncate(strings.ToValidUTF8(s, "\uFFFD"), maxClientString)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	n -= len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}

// subscriptions mirrors the resource names go-control-plane holds for one
// stream, per type, so that their total size can be bounded.
type subscriptions struct {
	names map[string]map[string]struct{}
	bytes int
}

func nameBytes(set map[string]struct{}) int {
	n := 0
	for name := range set {
		n += len(name)
	}
	return n
}

func checkNames(names []string) error {
	for _, n := range names {
		if len(n) > maxResourceNameLen {
			return status.Errorf(codes.InvalidArgument, "resource name %q is longer than %d bytes", truncate(n, 64), maxResourceNameLen)
		}
	}
	return nil
}

func namesExceeded(total int) error {
	return status.Errorf(codes.ResourceExhausted,
		"the stream subscribes to %d bytes of resource names, more than the %d a stream may hold (subscribe by wildcard instead)",
		total, maxNameBytesPerStream)
}

// setSotw replaces typeURL's names, as a state-of-the-world request does.
func (s *subscriptions) setSotw(typeURL string, names []string) error {
	if err := checkNames(names); err != nil {
		return err
	}
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	total := s.bytes - nameBytes(s.names[typeURL]) + nameBytes(set)
	if total > maxNameBytesPerStream {
		return namesExceeded(total)
	}
	s.store(typeURL, set, total)
	return nil
}

// updateDelta applies a delta request's subscribe and unsubscribe lists.
func (s *subscriptions) updateDelta(req *discovery.DeltaDiscoveryRequest) error {
	if err := checkNames(req.GetResourceNamesSubscribe()); err != nil {
		return err
	}
	old := s.names[req.GetTypeUrl()]
	set := make(map[string]struct{}, len(old)+len(req.GetResourceNamesSubscribe()))
	for n := range old {
		set[n] = struct{}{}
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		set[n] = struct{}{}
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		delete(set, n)
	}
	total := s.bytes - nameBytes(old) + nameBytes(set)
	if total > maxNameBytesPerStream {
		return namesExceeded(total)
	}
	s.store(req.GetTypeUrl(), set, total)
	return nil
}

func (s *subscriptions) store(typeURL string, set map[string]struct{}, total int) {
	if s.names == nil {
		s.names = make(map[string]map[string]struct{})
	}
	if len(set) == 0 {
		delete(s.names, typeURL)
	} else {
		s.names[typeURL] = set
	}
	s.bytes = total
}
