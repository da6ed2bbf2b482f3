// Package model is the normalized view of a service registry that every source
// produces and the conversion consumes. It deliberately knows nothing about
// Consul, cloud SDKs or Istio: a source translates its registry into these
// types, and convert/ translates these types into Istio resources.
//
// Sources report state as full sets per scope, in the manner of Prometheus
// target groups: a Group replaces everything the source said earlier under the
// same Scope, and a Group with no services removes the scope.
package model

import (
	"net/netip"
	"strings"
)

// Group is the complete set of services a source currently knows under one
// scope key. The scope is the unit of replacement: a Consul source uses the
// service name, a polling cloud source may use a single scope for everything.
type Group struct {
	Scope    string
	Services []Service
}

// Service is one logical service, identified across sources by its Host.
type Service struct {
	// Name is the registry's own name for the service (e.g. the Consul service
	// name). It is informational; the identity of a service is its Host.
	Name string
	// Host is the fully qualified name clients use, e.g. "web.service.consul".
	Host string
	// Ports are the service ports clients connect to.
	Ports []Port
	// Addresses are virtual IPs the registry itself gives the service (for
	// example Consul's "consul-virtual" tagged address, or a configured meta or
	// tag key). They come first when the adapter chooses the ServiceEntry's
	// spec.addresses; a service without one may get an allocated address.
	Addresses []string
	// Labels and Annotations go on the ServiceEntry's metadata.
	Labels      Labels
	Annotations Labels
	// Instances are the endpoints currently serving the service. Sources
	// apply their own health policy; an instance marked Critical is never
	// served regardless.
	Instances []Instance
	// Traffic is the registry's own traffic policy for the service (subsets,
	// load balancing, routes); nil when it states none.
	Traffic *Traffic `json:",omitempty"`
}

// Port is a service port.
type Port struct {
	Number   uint32
	Protocol Protocol
	// Name is optional; conversion names ports "<protocol>-<number>".
	Name string
}

// Instance is one workload endpoint of a service.
type Instance struct {
	// ID is unique among the instances of one service within one source.
	ID string
	// Address is an IP address or a DNS hostname.
	Address string
	// Ports maps a service port number to the port this instance listens on,
	// for instances that do not listen on the service port itself.
	Ports TargetPorts
	// Labels go on the WorkloadEntry (and the inline endpoint).
	Labels Labels
	// Locality is "region/zone/subzone" (any suffix may be omitted).
	Locality string
	// Network is the Istio network the address belongs to; Istio treats an
	// address as unique only within a network.
	Network string
	// Weight is the load-balancing weight; 0 means unset.
	Weight uint32
	Health Health
	// Identity is the workload's registry-level identity (a cloud role ARN, a
	// service account email...). It is carried as an annotation only: setting
	// WorkloadEntry.serviceAccount makes istiod require mutual TLS toward
	// the workload, which a VM without a sidecar cannot do.
	Identity string
	// ServiceAccount is set only when an operator configured it explicitly.
	ServiceAccount string
	// Annotations go on the WorkloadEntry.
	Annotations Labels
}

// Health is an instance's aggregated health.
type Health int

const (
	// HealthUnknown means the registry has no health information (e.g. a cloud
	// instance that is running); it is served.
	HealthUnknown Health = iota
	HealthPassing
	HealthWarning
	HealthCritical
)

func (h Health) String() string {
	switch h {
	case HealthPassing:
		return "passing"
	case HealthWarning:
		return "warning"
	case HealthCritical:
		return "critical"
	default:
		return "unknown"
	}
}

// Protocol is an Istio port protocol, in Istio's canonical spelling.
type Protocol string

// The protocols Istio understands for ServiceEntry ports.
const (
	ProtocolHTTP    Protocol = "HTTP"
	ProtocolHTTP2   Protocol = "HTTP2"
	ProtocolHTTPS   Protocol = "HTTPS"
	ProtocolGRPC    Protocol = "GRPC"
	ProtocolGRPCWeb Protocol = "GRPC-Web"
	ProtocolTCP     Protocol = "TCP"
	ProtocolTLS     Protocol = "TLS"
	ProtocolMongo   Protocol = "Mongo"
	ProtocolRedis   Protocol = "Redis"
	ProtocolMySQL   Protocol = "MySQL"
	ProtocolUDP     Protocol = "UDP"
)

var protocols = []Protocol{
	ProtocolHTTP, ProtocolHTTP2, ProtocolHTTPS, ProtocolGRPC, ProtocolGRPCWeb, ProtocolTCP,
	ProtocolTLS, ProtocolMongo, ProtocolRedis, ProtocolMySQL, ProtocolUDP,
}

// ParseProtocol maps a protocol name in any case ("http", "grpc-web") to
// Istio's spelling. It reports false for names Istio does not know.
func ParseProtocol(s string) (Protocol, bool) {
	for _, p := range protocols {
		if strings.EqualFold(string(p), s) {
			return p, true
		}
	}
	return "", false
}

// IsIP reports whether addr is a literal IP address (not a hostname).
func IsIP(addr string) bool {
	_, err := netip.ParseAddr(addr)
	return err == nil
}
