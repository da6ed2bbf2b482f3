package validation

// Ports pkg/config/validation/validation.go: the ServiceEntry and
// WorkloadEntry rules, and the metadata checks istiod's validation wrapper
// applies to every kind.

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"istio.io/api/annotation"
	"istio.io/api/label"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/model"
)

// Meta is the object metadata istiod's validation looks at besides the
// spec. It mirrors what the adapter puts in the MCP resource metadata.
type Meta struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
}

// ServiceEntry reports why istiod would reject se, or nil. It looks at the
// labels and annotations the resource will carry too: istiod rejects some
// annotations outright, and the istio.io/use-waypoint label changes the
// DYNAMIC_DNS rules. Errors about the name wrap ErrInvalidResourceName.
func ServiceEntry(meta Meta, se *networking.ServiceEntry) error {
	nameErr := ResourceName(meta.Name, meta.Namespace)
	if err := validateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	if se == nil {
		return errors.Join(nameErr, errors.New("spec: service entry spec is nil"))
	}
	return errors.Join(nameErr, validateServiceEntrySpec(meta, se, false))
}

// ServiceEntryCheckedEndpoints is ServiceEntry for a ServiceEntry whose
// every endpoint passed InlineEndpoint: at tens of
// thousands of services, validating each endpoint twice was a sixth of a cold
// sync (measured).
func ServiceEntryCheckedEndpoints(meta Meta, se *networking.ServiceEntry) error {
	nameErr := ResourceName(meta.Name, meta.Namespace)
	if err := validateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	return errors.Join(nameErr, validateServiceEntrySpec(meta, se, true))
}

// InlineEndpoint applies to one endpoint of se the rules ServiceEntry
// validation applies to each endpoint, so that a bad instance is
// left out alone instead of failing its whole ServiceEntry. servicePorts are
// the names of se's ports.
func InlineEndpoint(se *networking.ServiceEntry, servicePorts map[string]struct{}, ep *networking.WorkloadEntry) error {
	var errs errorList
	validateSEEndpoint(&errs, se.Resolution, servicePorts, 0, ep)
	return errs.join()
}

// validateSEEndpoint holds the per-endpoint rules of ServiceEntry
// validation for the resolutions that take endpoints; i is the endpoint's
// position, for messages.
func validateSEEndpoint(errs *errorList, res networking.ServiceEntry_Resolution, servicePorts map[string]struct{}, i int, ep *networking.WorkloadEntry) {
	if ep == nil {
		errs.addf("endpoints[%d]: endpoint cannot be nil", i)
		return
	}
	switch res {
	case networking.ServiceEntry_STATIC:
		// STATIC endpoints go through the WorkloadEntry rules, but must be
		// IP addresses or Unix sockets: Envoy would not resolve a hostname.
		validateWorkloadEntry(errs, true, ep, servicePorts, false)
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		// Message prefixes are built only for errors: this runs for every
		// endpoint of every service.
		field := func() string { return endpointField(ep) }
		// Unlike STATIC, the address is not required to be set and Unix
		// sockets are not accepted: it must be an IP or an FQDN.
		if !isValidIPAddress(ep.Address) {
			if err := validateFQDN(ep.Address); err != nil {
				errs.addf("%s: address %q is not a valid FQDN or an IP address", field(), ep.Address)
			}
		}
		if err := validateLabels(ep.Labels); err != nil {
			errs.addPrefixed(field()+" labels", err)
		}
		for _, name := range sortedKeys(ep.Ports) {
			port := ep.Ports[name]
			if _, ok := servicePorts[name]; !ok {
				errs.addf("%s: port name %q (%d) is not defined by the service entry", field(), name, port)
			}
			if err := validatePortName(name); err != nil {
				errs.addPrefixed(fmt.Sprintf("%s ports[%q] name", field(), name), err)
			}
			if err := validatePort(int(port)); err != nil {
				errs.addPrefixed(fmt.Sprintf("%s ports[%q]", field(), name), err)
			}
		}
	}
}

// WorkloadEntry reports why istiod would reject we, given the labels and
// annotations the resource will carry, or nil.
func WorkloadEntry(meta Meta, we *networking.WorkloadEntry) error {
	nameErr := ResourceName(meta.Name, meta.Namespace)
	if err := validateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	if we == nil {
		return errors.Join(nameErr, errors.New("spec: workload entry spec is nil"))
	}
	// Istio cannot tell which service ports a standalone WorkloadEntry
	// serves, so its port names are not checked against any service, and an
	// FQDN address is allowed (it may be selected by a DNS ServiceEntry).
	var errs errorList
	validateWorkloadEntry(&errs, false, we, nil, true)
	return errors.Join(nameErr, errs.join())
}

const (
	// unixAddressPrefix marks a Unix domain socket endpoint address.
	unixAddressPrefix = "unix://"
	// alwaysRejectAnnotation is pkg/config/constants.AlwaysReject, used by
	// Istio to test its webhook; any resource carrying it is rejected.
	alwaysRejectAnnotation = "internal.istio.io/webhook-always-reject"
	// internalParentNamespace and internalParentNames are
	// pkg/config/constants.InternalParentNamespace and InternalParentNames:
	// they escalate privileges, so Istio refuses them on user resources.
	internalParentNamespace = "internal.istio.io/parent-namespace"
	internalParentNames     = "internal.istio.io/parents"
)

// validateMetadata ports validateMetadata, which wraps every registered
// validation function: it rejects the resource before the spec is looked at.
func validateMetadata(meta Meta) error {
	// Only AuthorizationPolicy supports dry-run; on anything else the mere
	// presence of the annotation is an error.
	if v, ok := meta.Annotations[annotation.IoIstioDryRun.Name]; ok {
		return fmt.Errorf("metadata.annotations[%q] = %q: annotation is only supported on AuthorizationPolicy, please remove it",
			annotation.IoIstioDryRun.Name, v)
	}
	if _, ok := meta.Annotations[alwaysRejectAnnotation]; ok {
		return fmt.Errorf("metadata.annotations[%q]: annotation found, rejecting", alwaysRejectAnnotation)
	}
	for _, a := range []string{internalParentNamespace, internalParentNames} {
		if _, ok := meta.Annotations[a]; ok {
			return fmt.Errorf("metadata.annotations[%q]: annotation found, this may not be set by users", a)
		}
	}
	return nil
}

// errorList accumulates errors; join returns nil when there are none.
type errorList []error

func (e *errorList) addf(format string, a ...any) {
	*e = append(*e, fmt.Errorf(format, a...))
}

// addPrefixed records err (if non-nil) with a field prefix.
func (e *errorList) addPrefixed(prefix string, err error) {
	if err == nil {
		return
	}
	*e = append(*e, fmt.Errorf("%s: %w", prefix, err))
}

func (e errorList) join() error { return errors.Join(e...) }

// validateServiceEntrySpec validates se. With endpointsChecked, the
// per-endpoint rules are skipped because the caller already applied
// validateSEEndpoint to each endpoint (with the same resolution and
// ports); the rules on the endpoint list as a whole still apply.
func validateServiceEntrySpec(meta Meta, se *networking.ServiceEntry, endpointsChecked bool) error {
	var errs errorList

	// Selector errors make Istio return at once, without the other checks.
	// Only empty keys and wildcards are refused here; the label syntax of a
	// selector is not validated for ServiceEntry. A selector without labels
	// only draws a warning.
	if sel := se.GetWorkloadSelector(); sel != nil {
		for _, k := range sortedKeys(sel.GetLabels()) {
			v := sel.GetLabels()[k]
			if k == "" {
				errs.addf("workloadSelector.labels %q: empty key is not supported in selector", k+"="+v)
			}
			if strings.Contains(k, "*") || strings.Contains(v, "*") {
				errs.addf("workloadSelector.labels %q: wildcard is not supported in selector", k+"="+v)
			}
		}
		if len(errs) > 0 {
			return errs.join()
		}
	}

	// Deliberately "!= nil" rather than a length check, exactly as Istio
	// does: a non-nil empty endpoints slice alongside a selector is rejected.
	if se.WorkloadSelector != nil && se.Endpoints != nil {
		errs.addf("workloadSelector/endpoints: only one of workloadSelector or endpoints is allowed in a ServiceEntry")
	}

	if len(se.Hosts) == 0 {
		errs.addf("hosts: service entry must have at least one host")
	}
	for i, h := range se.Hosts {
		// A bare "*" would capture all traffic; it is never allowed. Partial
		// wildcards ("*foo.com") are only a warning in Istio.
		if h == "*" {
			errs.addf("hosts[%d] %q: the full wildcard host is not allowed in a ServiceEntry", i, h)
		} else {
			if err := validateWildcardDomain(h); err != nil {
				errs.addPrefixed(fmt.Sprintf("hosts[%d] %q", i, h), err)
			}
		}
	}

	cidrFound := false
	for i, a := range se.Addresses {
		cidrFound = cidrFound || strings.Contains(a, "/")
		if err := validateIPSubnet(a); err != nil {
			errs.addPrefixed(fmt.Sprintf("addresses[%d] %q", i, a), err)
		}
	}
	if cidrFound && se.Resolution != networking.ServiceEntry_NONE && se.Resolution != networking.ServiceEntry_STATIC {
		errs.addf("addresses: CIDR addresses are allowed only for NONE/STATIC resolution types, not %s", resolutionName(se.Resolution))
	}

	// servicePorts is a set of port names (Istio's sets.String); a non-nil
	// set means endpoint port names must be members of it.
	servicePorts := map[string]struct{}{}
	servicePortNumbers := map[uint32]struct{}{}
	for i, p := range se.Ports {
		if p == nil {
			errs.addf("ports[%d]: service entry port may not be null", i)
			continue
		}
		field := func() string { return fmt.Sprintf("ports[%d] %q", i, p.Name) }
		if _, dup := servicePorts[p.Name]; dup {
			errs.addf("%s: service entry port name %q already defined", field(), p.Name)
		}
		servicePorts[p.Name] = struct{}{}
		if _, dup := servicePortNumbers[p.Number]; dup {
			errs.addf("%s: service entry port number %d already defined", field(), p.Number)
		}
		servicePortNumbers[p.Number] = struct{}{}
		if p.TargetPort != 0 {
			if err := validatePort(int(p.TargetPort)); err != nil {
				errs.addPrefixed(field()+" targetPort", err)
			}
		}
		if err := validatePortName(p.Name); err != nil {
			errs.addPrefixed(field()+" name", err)
		}
		if err := validateProtocol(p.Protocol); err != nil {
			errs.addPrefixed(field()+" protocol", err)
		}
		if err := validatePort(int(p.Number)); err != nil {
			errs.addPrefixed(field()+" number", err)
		}
	}

	switch se.Resolution {
	case networking.ServiceEntry_NONE:
		if len(se.Endpoints) != 0 {
			errs.addf("endpoints: no endpoints should be provided for resolution type NONE (got %d)", len(se.Endpoints))
		}
	case networking.ServiceEntry_STATIC:
		if !endpointsChecked {
			for i, ep := range se.Endpoints {
				validateSEEndpoint(&errs, se.Resolution, servicePorts, i, ep)
			}
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		// Without endpoints Envoy resolves the hosts themselves, so they
		// must be plain resolvable names (no wildcard). Istio reports only
		// the first offending host.
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if err := validateFQDN(h); err != nil {
					errs.addf("hosts[%d] %q: hosts must be FQDN if no endpoints are provided for resolution mode %s: %v",
						i, h, resolutionName(se.Resolution), err)
					break
				}
			}
		}
		if se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			errs.addf("endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN (got %d)", len(se.Endpoints))
		}
		if !endpointsChecked {
			for i, ep := range se.Endpoints {
				validateSEEndpoint(&errs, se.Resolution, servicePorts, i, ep)
			}
		}
		if len(se.Addresses) > 0 {
			for i, p := range se.Ports {
				if p == nil {
					errs.addf("ports[%d]: ports cannot be nil", i)
					continue
				}
				// More than one host with an address and a TCP port is only
				// a warning in Istio; nothing to reject here.
				if proto, _ := parseProtocol(p.Protocol); isTCP(proto) {
					break
				}
			}
		}
	case networking.ServiceEntry_DYNAMIC_DNS:
		// The proxy resolves the Host header / SNI at request time (dynamic
		// forward proxy), so the entry describes wildcard hosts only, with
		// no addresses or endpoints, on ports whose protocol carries a name.
		if len(se.Hosts) == 0 {
			errs.addf("hosts: at least one wildcard host must be provided for resolution type DYNAMIC_DNS")
		}
		for i, h := range se.Hosts {
			if !strings.HasPrefix(h, "*") {
				errs.addf("hosts[%d] %q: host must be wildcarded for resolution mode DYNAMIC_DNS", i, h)
			}
		}
		if len(se.Addresses) != 0 {
			errs.addf("addresses: addresses cannot be set for resolution type DYNAMIC_DNS (got %q)", se.Addresses)
		}
		if len(se.Endpoints) != 0 {
			errs.addf("endpoints: endpoints cannot be set for resolution type DYNAMIC_DNS (got %d)", len(se.Endpoints))
		}
		for i, p := range se.Ports {
			if p == nil {
				errs.addf("ports[%d]: port cannot be nil", i)
				continue
			}
			switch proto, _ := parseProtocol(p.Protocol); proto {
			case model.ProtocolHTTP, model.ProtocolTLS, model.ProtocolGRPC, model.ProtocolHTTP2:
			default:
				errs.addf("ports[%d] %q protocol %q: only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
					i, p.Name, p.Protocol)
			}
		}
		if se.Location != networking.ServiceEntry_MESH_EXTERNAL && se.Location != networking.ServiceEntry_MESH_INTERNAL {
			errs.addf("location %d: location must be MESH_EXTERNAL or MESH_INTERNAL for resolution type DYNAMIC_DNS", int32(se.Location))
		}
		// Waypoints only support DYNAMIC_DNS for MESH_EXTERNAL entries.
		if se.Location == networking.ServiceEntry_MESH_INTERNAL && usesWaypoint(meta.Labels) {
			errs.addf("location MESH_INTERNAL: not supported with resolution type DYNAMIC_DNS when the ServiceEntry uses a waypoint (label %s=%q)",
				label.IoIstioUseWaypoint.Name, meta.Labels[label.IoIstioUseWaypoint.Name])
		}
	default:
		errs.addf("resolution %d: unsupported resolution type", int32(se.Resolution))
	}

	// With several hosts on one port the proxy must tell them apart: HTTP by
	// the authority header, TLS by SNI. Plain TCP cannot, so it is refused
	// unless resolution is NONE, where the hosts are ignored. An unset
	// protocol counts as neither HTTP nor TLS.
	if se.Resolution != networking.ServiceEntry_NONE && len(se.Hosts) > 1 {
		for i, p := range se.Ports {
			if p == nil {
				errs.addf("ports[%d]: ports cannot be nil", i)
				continue
			}
			if proto, _ := parseProtocol(p.Protocol); !isHTTP(proto) && !isTLS(proto) {
				errs.addf("ports[%d] %q protocol %q: multiple hosts provided with non-HTTP, non-TLS ports", i, p.Name, p.Protocol)
				break
			}
		}
	}

	validateExportTo(&errs, meta.Namespace, se.ExportTo, true)
	return errs.join()
}

// validateWorkloadEntry ports validateWorkloadEntry, shared by
// standalone WorkloadEntries (servicePorts nil, FQDN addresses allowed) and
// STATIC ServiceEntry endpoints (servicePorts non-nil, IPs or Unix sockets).
// endpoint says we is a ServiceEntry endpoint, named in messages by its
// address; messages are built only for errors.
func validateWorkloadEntry(errs *errorList, endpoint bool, we *networking.WorkloadEntry,
	servicePorts map[string]struct{}, allowFQDNAddresses bool,
) {
	field := func() string {
		if !endpoint {
			return ""
		}
		return endpointField(we)
	}
	prefix := func(f string) string {
		if !endpoint {
			return f
		}
		return field() + " " + f
	}
	addr := we.GetAddress()
	if addr == "" {
		// An entry reachable only through its network's gateway may omit the
		// address (a warning); otherwise Istio stops at this error.
		if we.Network == "" {
			errs.addf("%s: address is required unless network is set", prefix("address"))
			return
		}
	}
	unixEndpoint := false
	if strings.HasPrefix(addr, unixAddressPrefix) {
		unixEndpoint = true
		errs.addPrefixed(prefix(fmt.Sprintf("address %q", addr)), validateUnixAddress(strings.TrimPrefix(addr, unixAddressPrefix)))
		if len(we.Ports) != 0 {
			errs.addf("%s: unix endpoint %s must not include ports", prefix("ports"), addr)
		}
	} else if addr != "" && !isValidIPAddress(addr) {
		if !allowFQDNAddresses {
			errs.addf("%s: endpoint address %q is not a valid IP address (resolution STATIC needs IPs or unix:// sockets)", prefix("address"), addr)
		} else if err := validateFQDN(addr); err != nil {
			errs.addf("%s: endpoint address %q is not a valid FQDN or an IP address", prefix("address"), addr)
		}
	}
	for _, name := range sortedKeys(we.Ports) {
		port := we.Ports[name]
		if servicePorts != nil {
			if _, ok := servicePorts[name]; !ok {
				errs.addf("%s: port name %q (%d) is not defined by the service entry", orDefault(field(), "ports"), name, port)
			}
		}
		if err := validatePortName(name); err != nil {
			errs.addPrefixed(prefix(fmt.Sprintf("ports[%q] name", name)), err)
		}
		if err := validatePort(int(port)); err != nil {
			errs.addPrefixed(prefix(fmt.Sprintf("ports[%q]", name)), err)
		}
	}
	if err := validateLabels(we.Labels); err != nil {
		errs.addPrefixed(prefix("labels"), err)
	}
	// A Unix socket carries a single stream, so the service may only have
	// one port to map onto it.
	if unixEndpoint && servicePorts != nil && len(servicePorts) != 1 {
		errs.addf("%s: exactly 1 service port required for unix endpoints, the service entry has %d", orDefault(field(), "ports"), len(servicePorts))
	}
}

func endpointField(ep *networking.WorkloadEntry) string {
	return fmt.Sprintf("endpoint %q", ep.GetAddress())
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ExportTo applies istiod's exportTo rules for a ServiceEntry in namespace.
func ExportTo(namespace string, exportTo []string) error {
	var errs errorList
	validateExportTo(&errs, namespace, exportTo, true)
	return errs.join()
}

// validateExportTo ports validateExportTo, for a ServiceEntry
// (isServiceEntry) or a DestinationRule or VirtualService without a
// workload selector (the adapter writes none).
func validateExportTo(errs *errorList, namespace string, exportTo []string, isServiceEntry bool) {
	if len(exportTo) == 0 {
		return
	}
	seen := map[string]struct{}{}
	for i, e := range exportTo {
		key := e
		if e == "." {
			// "." means the config's own namespace, so "." and that
			// namespace are duplicates.
			key = namespace
		}
		if _, dup := seen[key]; dup {
			if key != e {
				errs.addf("exportTo[%d] %q: duplicate entries in exportTo: . and current namespace %s", i, e, namespace)
			} else {
				errs.addf("exportTo[%d] %q: duplicate entries in exportTo", i, e)
			}
			continue
		}
		// "~" is allowed for ServiceEntries only: the service is then
		// visible to nobody but its own proxies.
		if isServiceEntry && e == "~" {
			seen[key] = struct{}{}
			continue
		}
		// Note that for "." it is the namespace that is validated.
		if err := validateVisibility(key); err != nil {
			errs.addf("exportTo[%d] %q: %v", i, e, err)
			continue
		}
		seen[key] = struct{}{}
	}
	if _, ok := seen["*"]; ok && len(exportTo) > 1 {
		errs.addf("exportTo %q: cannot have both public (*) and non-public exportTo values for a resource", exportTo)
	}
	if _, ok := seen["~"]; ok && len(exportTo) > 1 {
		errs.addf("exportTo %q: cannot export service entry to no one (~) and someone", exportTo)
	}
}

// usesWaypoint ports usesWaypoint: the use-waypoint label names a
// waypoint, unless it is empty or "none".
func usesWaypoint(labels map[string]string) bool {
	v, ok := labels[label.IoIstioUseWaypoint.Name]
	return ok && v != "" && !strings.EqualFold(v, "none")
}

func resolutionName(r networking.ServiceEntry_Resolution) string {
	if n, ok := networking.ServiceEntry_Resolution_name[int32(r)]; ok {
		return n
	}
	return strconv.Itoa(int(r))
}

// validatePortName: port names are DNS-1123 labels (Istio's variant,
// which also accepts upper case letters).
func validatePortName(name string) error {
	if !isDNS1123Label(name) {
		return fmt.Errorf("invalid port name %q: must be a DNS-1123 label", name)
	}
	return nil
}

// validateProtocol: the empty protocol is allowed (protocol sniffing).
func validateProtocol(p string) error {
	if _, ok := parseProtocol(p); p != "" && !ok {
		return fmt.Errorf("unsupported protocol %q", p)
	}
	return nil
}

// validateUnixAddress: an absolute file path, or an abstract socket
// name starting with '@'. path (not filepath) keeps this OS-independent.
func validateUnixAddress(addr string) error {
	if addr == "" {
		return errors.New("unix address must not be empty")
	}
	if strings.HasPrefix(addr, "@") {
		return nil
	}
	if !path.IsAbs(addr) || strings.HasSuffix(addr, "/") {
		return fmt.Errorf("%s is not an absolute path to a file", addr)
	}
	return nil
}

// sortedKeys returns m's keys in order, so that messages do not depend on
// map order.
func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// DestinationRule reports why istiod would reject dr, or nil
// (ValidateDestinationRule). Only the rules of the fields the adapter sets
// are ported: host, exportTo, subsets (name, labels) and a traffic policy
// of load balancer and TCP connect timeout. Errors about the name wrap
// ErrInvalidResourceName.
func DestinationRule(meta Meta, dr *networking.DestinationRule) error {
	nameErr := ResourceName(meta.Name, meta.Namespace)
	if err := validateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	if dr == nil {
		return errors.Join(nameErr, errors.New("spec: destination rule spec is nil"))
	}
	var errs errorList
	errs.addPrefixed(fmt.Sprintf("host %q", dr.Host), validateWildcardDomain(dr.Host))
	validateTrafficPolicy(&errs, "trafficPolicy", dr.TrafficPolicy)
	seen := map[string]struct{}{}
	for i, s := range dr.Subsets {
		if s == nil {
			errs.addf("subsets[%d]: subset may not be null", i)
			continue
		}
		if _, dup := seen[s.Name]; dup {
			errs.addf("subsets[%d] %q: duplicate subset names: %s", i, s.Name, s.Name)
		}
		seen[s.Name] = struct{}{}
		field := fmt.Sprintf("subsets[%d] %q", i, s.Name)
		errs.addPrefixed(field, validateSubsetName(s.Name))
		errs.addPrefixed(field+" labels", validateLabels(s.Labels))
		validateTrafficPolicy(&errs, field+" trafficPolicy", s.TrafficPolicy)
	}
	validateExportTo(&errs, meta.Namespace, dr.ExportTo, false)
	return errors.Join(nameErr, errs.join())
}

// validateTrafficPolicy ports validateTrafficPolicy for the load balancer
// and the connection pool.
func validateTrafficPolicy(errs *errorList, field string, p *networking.TrafficPolicy) {
	if p == nil {
		return
	}
	if p.OutlierDetection == nil && p.ConnectionPool == nil && p.LoadBalancer == nil && p.Tls == nil &&
		p.PortLevelSettings == nil && p.Tunnel == nil && p.ProxyProtocol == nil && p.RetryBudget == nil {
		errs.addf("%s: traffic policy must have at least one field", field)
		return
	}
	validateConnectionPool(errs, field+".connectionPool", p.ConnectionPool)
	validateLoadBalancer(errs, field+".loadBalancer", p.LoadBalancer)
}

// validateConnectionPool ports validateConnectionPool for TCP settings.
func validateConnectionPool(errs *errorList, field string, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.Http == nil && cp.Tcp == nil {
		errs.addf("%s: connection pool must have at least one field", field)
		return
	}
	if tcp := cp.Tcp; tcp != nil {
		if tcp.MaxConnections < 0 {
			errs.addf("%s.tcp.maxConnections %d: max connections must be non-negative", field, tcp.MaxConnections)
		}
		if tcp.ConnectTimeout != nil {
			errs.addPrefixed(fmt.Sprintf("%s.tcp.connectTimeout %s", field, tcp.ConnectTimeout.AsDuration()), validateDuration(tcp.ConnectTimeout))
		}
	}
}

// validateLoadBalancer ports validateLoadBalancer for simple and
// consistent-hash balancing.
func validateLoadBalancer(errs *errorList, field string, lb *networking.LoadBalancerSettings) {
	ch := lb.GetConsistentHash()
	if ch == nil {
		return
	}
	if c := ch.GetHttpCookie(); c != nil && c.GetName() == "" {
		errs.addf("%s.consistentHash.httpCookie: name required for HttpCookie", field)
	}
	if ml := ch.GetMaglev(); ml != nil {
		if ml.TableSize == 0 {
			errs.addf("%s.consistentHash.maglev: tableSize must be set for maglev", field)
		}
		if ml.TableSize >= 5000011 {
			errs.addf("%s.consistentHash.maglev.tableSize %d: tableSize must be less than 5000011 for maglev", field, ml.TableSize)
		}
		if !isPrime(ml.TableSize) {
			errs.addf("%s.consistentHash.maglev.tableSize %d: tableSize must be a prime number for maglev", field, ml.TableSize)
		}
	}
}

// isPrime is Istio's copy of Envoy's primality test of a Maglev table size.
func isPrime(x uint64) bool {
	if x != 0 && x < 4 {
		return true
	} else if x&1 == 0 {
		return false
	}
	for f := uint64(3); f*f <= x; f += 2 {
		if x%f == 0 {
			return false
		}
	}
	return true
}

// validateSubsetName ports validateSubsetName.
func validateSubsetName(name string) error {
	if name == "" {
		return errors.New("subset name cannot be empty")
	}
	if !isDNS1123Label(name) {
		return fmt.Errorf("subset name is invalid: %s", name)
	}
	return nil
}

// VirtualService reports why istiod would reject vs, or nil
// (ValidateVirtualService), for a VirtualService bound to the mesh (no
// gateways) with HTTP routes only, which is what the adapter writes. Errors
// about the name wrap ErrInvalidResourceName.
func VirtualService(meta Meta, vs *networking.VirtualService) error {
	nameErr := ResourceName(meta.Name, meta.Namespace)
	if err := validateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	if vs == nil {
		return errors.Join(nameErr, errors.New("spec: virtual service spec is nil"))
	}
	var errs errorList
	if len(vs.Hosts) == 0 {
		errs.addf("hosts: a VirtualService without hosts is a delegate, which the adapter does not write")
	}
	// JWT claim routing is for gateways only.
	for i, h := range vs.Http {
		for j, m := range h.GetMatch() {
			for _, k := range sortedKeys(m.GetHeaders()) {
				if isRoutingClaim(k) {
					errs.addf("http[%d].match[%d].headers[%q]: JWT claim based routing (key: %s) is only supported for gateway, found no gateways: []", i, j, k, k)
				}
			}
			for _, k := range sortedKeys(m.GetWithoutHeaders()) {
				if isRoutingClaim(k) {
					errs.addf("http[%d].match[%d].withoutHeaders[%q]: JWT claim based routing (key: %s) is only supported for gateway, found no gateways: []", i, j, k, k)
				}
			}
		}
	}
	allValid := true
	for i, h := range vs.Hosts {
		if err := validateWildcardDomain(h); err != nil {
			if validateIPAddress(h) != nil {
				errs.addPrefixed(fmt.Sprintf("hosts[%d] %q", i, h), err)
				allValid = false
			}
		} else if h == "*" {
			errs.addf("hosts[%d] %q: wildcard host * is not allowed for virtual services bound to the mesh gateway", i, h)
			allValid = false
		}
	}
	if allValid {
		for i := range vs.Hosts {
			for j := i + 1; j < len(vs.Hosts); j++ {
				if hostsMatch(vs.Hosts[i], vs.Hosts[j]) {
					errs.addf("hosts: duplicate hosts in virtual service: %s & %s", vs.Hosts[i], vs.Hosts[j])
				}
			}
		}
	}
	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		errs.addf("http: http, tcp or tls must be provided in virtual service")
	}
	for i, h := range vs.Http {
		if h == nil {
			errs.addf("http[%d]: http route may not be null", i)
			continue
		}
		validateHTTPRoute(&errs, fmt.Sprintf("http[%d]", i), h)
	}
	validateExportTo(&errs, meta.Namespace, vs.ExportTo, false)
	return errors.Join(nameErr, errs.join())
}

// hostsMatch ports host.Name.Matches for two hosts: equal, or one a
// wildcard whose suffix the other ends with.
func hostsMatch(a, b string) bool {
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	switch {
	case !aw && !bw:
		return a == b
	case aw && !bw:
		return strings.HasSuffix(b, a[1:])
	case !aw && bw:
		return strings.HasSuffix(a, b[1:])
	}
	if len(a) > len(b) {
		return strings.HasSuffix(a[1:], b[1:])
	}
	return strings.HasSuffix(b[1:], a[1:])
}

// Header names and values: pkg/config/validation/validation.go's header
// checks, and pkg/jwt/routing.go's claim syntax.

// tchars are RFC 7230's token characters, the valid header name bytes.
const tchars = "!#$%&'*+-.^_`|~"

func isHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !IsAlnum(c) && !strings.ContainsRune(tchars, rune(c)) {
			return false
		}
	}
	return true
}

// pseudoHeaders are the HTTP/2 pseudo-headers a match may name.
var pseudoHeaders = []string{":method", ":scheme", ":authority", ":path", ":status"}

// isRoutingClaim ports jwt.ToRoutingClaim(name).Match.
func isRoutingClaim(name string) bool {
	const claim = "@request.auth.claims"
	if !strings.HasPrefix(strings.ToLower(name), claim) {
		return false
	}
	n := name[len(claim):]
	return strings.HasPrefix(n, ".") && len(n) > 1 || strings.HasPrefix(n, "[") && strings.HasSuffix(n, "]") && len(n) > 2
}

// validateHeaderNameOrJwtClaimRoute ports ValidateHTTPHeaderNameOrJwtClaimRoute.
func validateHeaderNameOrJwtClaimRoute(name string) error {
	switch {
	case name == "":
		return errors.New("header name cannot be empty")
	case isRoutingClaim(name), slices.Contains(pseudoHeaders, name):
		return nil
	case !isHeaderName(name):
		return fmt.Errorf("header name %s is not a valid header name", name)
	}
	return nil
}

// isInternalHeader and isAuthorityHeader port their namesakes.
func isInternalHeader(k string) bool {
	return strings.HasPrefix(k, ":") || strings.EqualFold(k, "host")
}

func isAuthorityHeader(k string) bool {
	return strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host")
}

// validateHeaderWithAuthorityOperationName ports
// ValidateHTTPHeaderWithAuthorityOperationName (request add and set).
func validateHeaderWithAuthorityOperationName(name string) error {
	if name == "" {
		return errors.New("header name cannot be empty")
	}
	if isInternalHeader(name) && !isAuthorityHeader(name) {
		return fmt.Errorf(`invalid header %q: header cannot have ":" prefix`, name)
	}
	return nil
}

// validateHeaderOperationName ports ValidateHTTPHeaderOperationName
// (request remove, every response operation).
func validateHeaderOperationName(name string) error {
	if name == "" {
		return errors.New("header name cannot be empty")
	}
	if strings.EqualFold(name, "host") {
		return fmt.Errorf(`invalid header %q: cannot set Host header`, name)
	}
	if isInternalHeader(name) {
		return fmt.Errorf(`invalid header %q: header cannot have ":" prefix`, name)
	}
	return nil
}

// validateHeaderValueConfig ports ValidateHTTPHeaderValue: no control
// characters but tab, and Envoy's %VARIABLE% syntax well formed.
func validateHeaderValueConfig(value string) error {
	for i := 0; i < len(value); i++ {
		if c := value[i]; c <= 0x08 || c >= 0x0a && c <= 0x1f || c == 0x7f {
			// Istio's message, with the control characters shown as spaces
			// (a message is one line), then the value quoted.
			shown := strings.Map(func(r rune) rune {
				if r < 0x20 && r != '\t' || r == 0x7f {
					return ' '
				}
				return r
			}, value)
			return fmt.Errorf("header value configuration %s is invalid (%q)", shown, value)
		}
	}
	if err := validateHeaderValue(value); err != nil {
		return fmt.Errorf("header value configuration: %w", err)
	}
	return nil
}
