package convert

// This file ports istiod's validation of ServiceEntry and WorkloadEntry so the
// adapter can refuse to serve a resource that istiod would silently drop.
// istiod never NACKs MCP config: a resource that fails validation is logged
// and discarded, so the only way to notice is to run the same rules first.
//
// Ported (Apache-2.0) from istio/istio, release 1.30/1.31 era:
//   - pkg/config/validation/validation.go: ValidateServiceEntry,
//     ValidateWorkloadEntry/validateWorkloadEntry, validateExportTo,
//     ValidateAlphaWorkloadSelector, ValidatePortName, ValidateProtocol,
//     ValidateUnixAddress, usesWaypoint, validateMetadata/checkDryRunAnnotation
//   - pkg/config/validation/agent/validation.go: ValidatePort, ValidateFQDN,
//     ValidateWildcardDomain, ValidateDNS1123Labels, CheckDNS1123Preconditions,
//     ValidateIPAddress, ValidateIPSubnet
//   - pkg/config/labels/instance.go: Instance.Validate, IsDNS1123Label,
//     IsWildcardDNS1123Label
//   - pkg/config/protocol/instance.go: Parse, IsHTTP, IsTLS, IsTCP
//   - pkg/config/visibility/visibility.go: Instance.Validate
//   - pkg/config/host/name.go: Name.IsWildCarded
//   - pkg/util/net/ip.go: IsValidIPAddress
//
// Only rules that make istiod reject the resource are ported; Istio's
// warnings (partial wildcards, TCP ports without addresses, workloadSelector
// with resolution NONE, unset address with a network, ...) are accepted.
// The messages are our own: each names the field and the offending value.

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"istio.io/api/annotation"
	"istio.io/api/label"
	networking "istio.io/api/networking/v1alpha3"
)

// ErrInvalidResourceName marks errors about a resource's name or namespace,
// as opposed to its spec. istiod's MCP client only requires that
// "namespace/name" splits into exactly two parts (neither may contain '/');
// the stricter Kubernetes DNS-1123 rules checked here are what a resource
// name must satisfy anywhere else in a mesh. Use errors.Is to tell them
// apart from spec errors.
var ErrInvalidResourceName = errors.New("invalid resource name")

// ValidationMeta is the object metadata istiod's validation looks at besides
// the spec. It mirrors what the adapter puts in the MCP resource metadata.
type ValidationMeta struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
}

// ValidateServiceEntry reports why istiod would reject se, or nil.
func ValidateServiceEntry(name, namespace string, se *networking.ServiceEntry) error {
	return ValidateServiceEntryMeta(ValidationMeta{Name: name, Namespace: namespace}, se)
}

// ValidateWorkloadEntry likewise for a WorkloadEntry.
func ValidateWorkloadEntry(name, namespace string, we *networking.WorkloadEntry) error {
	return ValidateWorkloadEntryMeta(ValidationMeta{Name: name, Namespace: namespace}, we)
}

// ValidateServiceEntryMeta is ValidateServiceEntry with the labels and
// annotations the resource will carry: istiod rejects some annotations
// outright, and the istio.io/use-waypoint label changes the DYNAMIC_DNS rules.
func ValidateServiceEntryMeta(meta ValidationMeta, se *networking.ServiceEntry) error {
	nameErr := ValidateResourceName(meta.Name, meta.Namespace)
	if err := istioValidateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	if se == nil {
		return errors.Join(nameErr, errors.New("spec: service entry spec is nil"))
	}
	return errors.Join(nameErr, istioValidateServiceEntrySpec(meta, se, false))
}

// validateServiceEntryCheckedEndpoints is ValidateServiceEntryMeta for a
// ServiceEntry whose every endpoint passed validateInlineEndpoint: at tens of
// thousands of services, validating each endpoint twice was a sixth of a cold
// sync (measured).
func validateServiceEntryCheckedEndpoints(meta ValidationMeta, se *networking.ServiceEntry) error {
	nameErr := ValidateResourceName(meta.Name, meta.Namespace)
	if err := istioValidateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	return errors.Join(nameErr, istioValidateServiceEntrySpec(meta, se, true))
}

// validateInlineEndpoint applies to one endpoint of se the rules
// ServiceEntry validation applies to each endpoint, so that a bad instance is
// left out alone instead of failing its whole ServiceEntry. servicePorts are
// the names of se's ports.
func validateInlineEndpoint(se *networking.ServiceEntry, servicePorts map[string]struct{}, ep *networking.WorkloadEntry) error {
	var errs istioErrs
	istioValidateSEEndpoint(&errs, se.Resolution, servicePorts, 0, ep)
	return errs.join()
}

// istioValidateSEEndpoint holds the per-endpoint rules of ServiceEntry
// validation for the resolutions that take endpoints; i is the endpoint's
// position, for messages.
func istioValidateSEEndpoint(errs *istioErrs, res networking.ServiceEntry_Resolution, servicePorts map[string]struct{}, i int, ep *networking.WorkloadEntry) {
	if ep == nil {
		errs.addf("endpoints[%d]: endpoint cannot be nil", i)
		return
	}
	switch res {
	case networking.ServiceEntry_STATIC:
		// STATIC endpoints go through the WorkloadEntry rules, but must be
		// IP addresses or Unix sockets: Envoy would not resolve a hostname.
		istioValidateWorkloadEntry(errs, true, ep, servicePorts, false)
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		// Message prefixes are built only for errors: this runs for every
		// endpoint of every service.
		field := func() string { return istioEndpointField(ep) }
		// Unlike STATIC, the address is not required to be set and Unix
		// sockets are not accepted: it must be an IP or an FQDN.
		if !istioIsValidIPAddress(ep.Address) {
			if err := istioValidateFQDN(ep.Address); err != nil {
				errs.addf("%s: address %q is not a valid FQDN or an IP address", field(), ep.Address)
			}
		}
		if err := istioValidateLabels(ep.Labels); err != nil {
			errs.addPrefixed(field()+" labels", err)
		}
		for _, name := range sortedKeys(ep.Ports) {
			port := ep.Ports[name]
			if _, ok := servicePorts[name]; !ok {
				errs.addf("%s: port name %q (%d) is not defined by the service entry", field(), name, port)
			}
			if err := istioValidatePortName(name); err != nil {
				errs.addPrefixed(fmt.Sprintf("%s ports[%q] name", field(), name), err)
			}
			if err := istioValidatePort(int(port)); err != nil {
				errs.addPrefixed(fmt.Sprintf("%s ports[%q]", field(), name), err)
			}
		}
	}
}

// ValidateWorkloadEntryMeta is ValidateWorkloadEntry with the labels and
// annotations the resource will carry.
func ValidateWorkloadEntryMeta(meta ValidationMeta, we *networking.WorkloadEntry) error {
	nameErr := ValidateResourceName(meta.Name, meta.Namespace)
	if err := istioValidateMetadata(meta); err != nil {
		return errors.Join(nameErr, err)
	}
	if we == nil {
		return errors.Join(nameErr, errors.New("spec: workload entry spec is nil"))
	}
	// Istio cannot tell which service ports a standalone WorkloadEntry
	// serves, so its port names are not checked against any service, and an
	// FQDN address is allowed (it may be selected by a DNS ServiceEntry).
	var errs istioErrs
	istioValidateWorkloadEntry(&errs, false, we, nil, true)
	return errors.Join(nameErr, errs.join())
}

// ValidateResourceName checks the name and namespace of a config resource.
// Every error it returns wraps ErrInvalidResourceName.
func ValidateResourceName(name, namespace string) error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidResourceName, fmt.Sprintf(format, a...)))
	}
	// istiod's MCP client (mcpToPilot) splits Metadata.Name on "/" and drops
	// the resource unless there are exactly two parts.
	if strings.Contains(namespace, "/") {
		bad("metadata.namespace %q: must not contain '/' (istiod splits \"namespace/name\" on '/')", namespace)
	}
	if strings.Contains(name, "/") {
		bad("metadata.name %q: must not contain '/' (istiod splits \"namespace/name\" on '/')", name)
	}
	switch {
	case namespace == "":
		bad("metadata.namespace: must not be empty")
	case len(namespace) > 63 || !isDNS1123Label(namespace, false):
		bad("metadata.namespace %q: must be a lowercase RFC 1123 label of at most 63 characters", namespace)
	}
	switch {
	case name == "":
		bad("metadata.name: must not be empty")
	case len(name) > 253 || !isDNS1123Subdomain(name, false):
		bad("metadata.name %q: must be a lowercase RFC 1123 subdomain of at most 253 characters", name)
	}
	return errors.Join(errs...)
}

const (
	// istioUnixAddressPrefix marks a Unix domain socket endpoint address.
	istioUnixAddressPrefix = "unix://"
	// istioAlwaysRejectAnnotation is pkg/config/constants.AlwaysReject, used by
	// Istio to test its webhook; any resource carrying it is rejected.
	istioAlwaysRejectAnnotation = "internal.istio.io/webhook-always-reject"
	// istioInternalParentNamespace and istioInternalParentNames are
	// pkg/config/constants.InternalParentNamespace and InternalParentNames:
	// they escalate privileges, so Istio refuses them on user resources.
	istioInternalParentNamespace = "internal.istio.io/parent-namespace"
	istioInternalParentNames     = "internal.istio.io/parents"
)

// istioValidateMetadata ports validateMetadata, which wraps every registered
// validation function: it rejects the resource before the spec is looked at.
func istioValidateMetadata(meta ValidationMeta) error {
	// Only AuthorizationPolicy supports dry-run; on anything else the mere
	// presence of the annotation is an error.
	if v, ok := meta.Annotations[annotation.IoIstioDryRun.Name]; ok {
		return fmt.Errorf("metadata.annotations[%q] = %q: annotation is only supported on AuthorizationPolicy, please remove it",
			annotation.IoIstioDryRun.Name, v)
	}
	if _, ok := meta.Annotations[istioAlwaysRejectAnnotation]; ok {
		return fmt.Errorf("metadata.annotations[%q]: annotation found, rejecting", istioAlwaysRejectAnnotation)
	}
	for _, a := range []string{istioInternalParentNamespace, istioInternalParentNames} {
		if _, ok := meta.Annotations[a]; ok {
			return fmt.Errorf("metadata.annotations[%q]: annotation found, this may not be set by users", a)
		}
	}
	return nil
}

// istioErrs accumulates errors; join returns nil when there are none.
type istioErrs []error

func (e *istioErrs) addf(format string, a ...any) {
	*e = append(*e, fmt.Errorf(format, a...))
}

// addPrefixed records err (if non-nil) with a field prefix.
func (e *istioErrs) addPrefixed(prefix string, err error) {
	if err == nil {
		return
	}
	*e = append(*e, fmt.Errorf("%s: %w", prefix, err))
}

func (e istioErrs) join() error { return errors.Join(e...) }

// istioValidateServiceEntrySpec validates se. With endpointsChecked, the
// per-endpoint rules are skipped because the caller already applied
// istioValidateSEEndpoint to each endpoint (with the same resolution and
// ports); the rules on the endpoint list as a whole still apply.
func istioValidateServiceEntrySpec(meta ValidationMeta, se *networking.ServiceEntry, endpointsChecked bool) error {
	var errs istioErrs

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
			errs.addPrefixed(fmt.Sprintf("hosts[%d] %q", i, h), istioValidateWildcardDomain(h))
		}
	}

	cidrFound := false
	for i, a := range se.Addresses {
		cidrFound = cidrFound || strings.Contains(a, "/")
		errs.addPrefixed(fmt.Sprintf("addresses[%d] %q", i, a), istioValidateIPSubnet(a))
	}
	if cidrFound && se.Resolution != networking.ServiceEntry_NONE && se.Resolution != networking.ServiceEntry_STATIC {
		errs.addf("addresses: CIDR addresses are allowed only for NONE/STATIC resolution types, not %s", istioResolutionName(se.Resolution))
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
			if err := istioValidatePort(int(p.TargetPort)); err != nil {
				errs.addPrefixed(field()+" targetPort", err)
			}
		}
		if err := istioValidatePortName(p.Name); err != nil {
			errs.addPrefixed(field()+" name", err)
		}
		if err := istioValidateProtocol(p.Protocol); err != nil {
			errs.addPrefixed(field()+" protocol", err)
		}
		if err := istioValidatePort(int(p.Number)); err != nil {
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
				istioValidateSEEndpoint(&errs, se.Resolution, servicePorts, i, ep)
			}
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		// Without endpoints Envoy resolves the hosts themselves, so they
		// must be plain resolvable names (no wildcard). Istio reports only
		// the first offending host.
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if err := istioValidateFQDN(h); err != nil {
					errs.addf("hosts[%d] %q: hosts must be FQDN if no endpoints are provided for resolution mode %s: %v",
						i, h, istioResolutionName(se.Resolution), err)
					break
				}
			}
		}
		if se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			errs.addf("endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN (got %d)", len(se.Endpoints))
		}
		if !endpointsChecked {
			for i, ep := range se.Endpoints {
				istioValidateSEEndpoint(&errs, se.Resolution, servicePorts, i, ep)
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
				if istioParseProtocol(p.Protocol).isTCP() {
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
			switch istioParseProtocol(p.Protocol) {
			case istioProtoHTTP, istioProtoTLS, istioProtoGRPC, istioProtoHTTP2:
			default:
				errs.addf("ports[%d] %q protocol %q: only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
					i, p.Name, p.Protocol)
			}
		}
		if se.Location != networking.ServiceEntry_MESH_EXTERNAL && se.Location != networking.ServiceEntry_MESH_INTERNAL {
			errs.addf("location %d: location must be MESH_EXTERNAL or MESH_INTERNAL for resolution type DYNAMIC_DNS", int32(se.Location))
		}
		// Waypoints only support DYNAMIC_DNS for MESH_EXTERNAL entries.
		if se.Location == networking.ServiceEntry_MESH_INTERNAL && istioUsesWaypoint(meta.Labels) {
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
			if proto := istioParseProtocol(p.Protocol); !proto.isHTTP() && !proto.isTLS() {
				errs.addf("ports[%d] %q protocol %q: multiple hosts provided with non-HTTP, non-TLS ports", i, p.Name, p.Protocol)
				break
			}
		}
	}

	istioValidateExportTo(&errs, meta.Namespace, se.ExportTo)
	return errs.join()
}

// istioValidateWorkloadEntry ports validateWorkloadEntry, shared by
// standalone WorkloadEntries (servicePorts nil, FQDN addresses allowed) and
// STATIC ServiceEntry endpoints (servicePorts non-nil, IPs or Unix sockets).
// endpoint says we is a ServiceEntry endpoint, named in messages by its
// address; messages are built only for errors.
func istioValidateWorkloadEntry(errs *istioErrs, endpoint bool, we *networking.WorkloadEntry,
	servicePorts map[string]struct{}, allowFQDNAddresses bool,
) {
	field := func() string {
		if !endpoint {
			return ""
		}
		return istioEndpointField(we)
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
	if strings.HasPrefix(addr, istioUnixAddressPrefix) {
		unixEndpoint = true
		errs.addPrefixed(prefix(fmt.Sprintf("address %q", addr)), istioValidateUnixAddress(strings.TrimPrefix(addr, istioUnixAddressPrefix)))
		if len(we.Ports) != 0 {
			errs.addf("%s: unix endpoint %s must not include ports", prefix("ports"), addr)
		}
	} else if addr != "" && !istioIsValidIPAddress(addr) {
		if !allowFQDNAddresses {
			errs.addf("%s: endpoint address %q is not a valid IP address (resolution STATIC needs IPs or unix:// sockets)", prefix("address"), addr)
		} else if err := istioValidateFQDN(addr); err != nil {
			errs.addf("%s: endpoint address %q is not a valid FQDN or an IP address", prefix("address"), addr)
		}
	}
	for _, name := range sortedKeys(we.Ports) {
		port := we.Ports[name]
		if servicePorts != nil {
			if _, ok := servicePorts[name]; !ok {
				errs.addf("%s: port name %q (%d) is not defined by the service entry", istioOr(field(), "ports"), name, port)
			}
		}
		if err := istioValidatePortName(name); err != nil {
			errs.addPrefixed(prefix(fmt.Sprintf("ports[%q] name", name)), err)
		}
		if err := istioValidatePort(int(port)); err != nil {
			errs.addPrefixed(prefix(fmt.Sprintf("ports[%q]", name)), err)
		}
	}
	if err := istioValidateLabels(we.Labels); err != nil {
		errs.addPrefixed(prefix("labels"), err)
	}
	// A Unix socket carries a single stream, so the service may only have
	// one port to map onto it.
	if unixEndpoint && servicePorts != nil && len(servicePorts) != 1 {
		errs.addf("%s: exactly 1 service port required for unix endpoints, the service entry has %d", istioOr(field(), "ports"), len(servicePorts))
	}
}

func istioEndpointField(ep *networking.WorkloadEntry) string {
	return fmt.Sprintf("endpoint %q", ep.GetAddress())
}

func istioOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// istioValidateExportTo ports validateExportTo for a ServiceEntry
// (isServiceEntry=true, not a DestinationRule).
func istioValidateExportTo(errs *istioErrs, namespace string, exportTo []string) {
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
		if e == "~" {
			seen[key] = struct{}{}
			continue
		}
		// Note that for "." it is the namespace that is validated.
		if err := istioValidateVisibility(key); err != nil {
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

// istioValidateVisibility ports visibility.Instance.Validate.
func istioValidateVisibility(v string) error {
	switch v {
	case ".", "*":
		return nil
	case "~":
		return errors.New("exportTo ~ (none) is not allowed for Istio configuration objects")
	}
	if !istioIsDNS1123Label(v) {
		return errors.New("only .,*,~, or a valid DNS 1123 label is allowed as exportTo entry")
	}
	return nil
}

// istioUsesWaypoint ports usesWaypoint: the use-waypoint label names a
// waypoint, unless it is empty or "none".
func istioUsesWaypoint(labels map[string]string) bool {
	v, ok := labels[label.IoIstioUseWaypoint.Name]
	return ok && v != "" && !strings.EqualFold(v, "none")
}

func istioResolutionName(r networking.ServiceEntry_Resolution) string {
	if n, ok := networking.ServiceEntry_Resolution_name[int32(r)]; ok {
		return n
	}
	return strconv.Itoa(int(r))
}

// --- pkg/config/validation/validation.go helpers ---

// istioValidatePortName: port names are DNS-1123 labels (Istio's variant,
// which also accepts upper case letters).
func istioValidatePortName(name string) error {
	if !istioIsDNS1123Label(name) {
		return fmt.Errorf("invalid port name %q: must be a DNS-1123 label", name)
	}
	return nil
}

// istioValidateProtocol: the empty protocol is allowed (protocol sniffing).
func istioValidateProtocol(p string) error {
	if p != "" && istioParseProtocol(p) == istioProtoUnsupported {
		return fmt.Errorf("unsupported protocol %q", p)
	}
	return nil
}

// istioValidateUnixAddress: an absolute file path, or an abstract socket
// name starting with '@'. path (not filepath) keeps this OS-independent.
func istioValidateUnixAddress(addr string) error {
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

// --- pkg/config/validation/agent/validation.go ---

func istioValidatePort(port int) error {
	if 1 <= port && port <= 65535 {
		return nil
	}
	return fmt.Errorf("port number %d must be in the range 1..65535", port)
}

func istioCheckDNS1123Preconditions(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("domain name %q too long (max 255)", name)
	}
	if len(name) == 0 {
		return errors.New("empty domain name not allowed")
	}
	return nil
}

// istioValidateDNS1123Labels: every label a DNS-1123 label, a trailing dot
// allowed, and an all-numeric top-level label refused (which is what keeps
// IPv4 addresses out of hosts).
func istioValidateDNS1123Labels(domain string) error {
	parts := strings.Split(domain, ".")
	tld := parts[len(parts)-1]
	if _, err := strconv.Atoi(tld); err == nil {
		return fmt.Errorf("domain name %q invalid (top level domain %q cannot be all-numeric)", domain, tld)
	}
	for i, l := range parts {
		if i == len(parts)-1 && l == "" {
			return nil
		}
		if !istioIsDNS1123Label(l) {
			return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, l)
		}
	}
	return nil
}

// istioValidateFQDN: Istio's "FQDN" does not require a dot; it only rejects
// wildcards and malformed labels.
func istioValidateFQDN(fqdn string) error {
	if err := istioCheckDNS1123Preconditions(fqdn); err != nil {
		return err
	}
	return istioValidateDNS1123Labels(fqdn)
}

// istioValidateWildcardDomain: like FQDN but the first label may be a
// wildcard ("*", "*foo", "*-foo").
func istioValidateWildcardDomain(domain string) error {
	if err := istioCheckDNS1123Preconditions(domain); err != nil {
		return err
	}
	parts := strings.SplitN(domain, ".", 2)
	if !istioIsWildcardDNS1123Label(parts[0]) {
		return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, parts[0])
	} else if len(parts) > 1 {
		return istioValidateDNS1123Labels(parts[1])
	}
	return nil
}

func istioValidateIPAddress(addr string) error {
	if _, err := netip.ParseAddr(addr); err != nil {
		return fmt.Errorf("%s is not a valid IP", addr)
	}
	return nil
}

// istioValidateIPSubnet accepts "a.b.c.d", "a.b.c.d/xx" and the IPv6 forms.
func istioValidateIPSubnet(subnet string) error {
	if strings.Count(subnet, "/") == 1 {
		if _, err := netip.ParsePrefix(subnet); err != nil {
			return fmt.Errorf("%s is not a valid CIDR block", subnet)
		}
		return nil
	}
	return istioValidateIPAddress(subnet)
}

// --- pkg/util/net ---

func istioIsValidIPAddress(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsValid()
}

// --- pkg/config/labels/instance.go ---

const (
	istioDNS1123LabelMaxLength = 63
	istioDNS1123LabelFmt       = "[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
	// "*", or a label optionally prefixed with "*" or "*-".
	istioWildcardPrefix = `(\*|(\*|\*-)?` + istioDNS1123LabelFmt + `)`
	// Kubernetes qualified name: alphanumerics, '-', '_', '.', starting and
	// ending with an alphanumeric.
	istioQualifiedNameFmt = "(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
	// Label keys may carry a DNS-name prefix followed by '/'.
	istioDNSNamePrefixFmt       = istioDNS1123LabelFmt + `(?:\.` + istioDNS1123LabelFmt + `)*/`
	istioDNSNamePrefixMaxLength = 253
)

// Istio and Kubernetes define these syntaxes with regular expressions
// (kept in syntax_test.go, which checks these loops accept exactly the same
// strings). Matching them was a fifth of a cold sync's CPU at 50k services.

// isDNS1123Label matches [a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?, or its
// lowercase form when mixedCase is false. Length limits are the callers'.
func isDNS1123Label(v string, mixedCase bool) bool {
	alnum := isLowerAlnum
	if mixedCase {
		alnum = isAlnum
	}
	if v == "" || !alnum(v[0]) || !alnum(v[len(v)-1]) {
		return false
	}
	for i := 1; i < len(v)-1; i++ {
		if c := v[i]; c != '-' && !alnum(c) {
			return false
		}
	}
	return true
}

// isDNS1123Subdomain matches DNS-1123 labels joined by dots.
func isDNS1123Subdomain(v string, mixedCase bool) bool {
	for {
		label, rest, more := strings.Cut(v, ".")
		if !isDNS1123Label(label, mixedCase) {
			return false
		}
		if !more {
			return true
		}
		v = rest
	}
}

// isQualifiedName matches (?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9].
func isQualifiedName(v string) bool {
	if v == "" || !isAlnum(v[0]) || !isAlnum(v[len(v)-1]) {
		return false
	}
	for i := 1; i < len(v)-1; i++ {
		if c := v[i]; c != '-' && c != '_' && c != '.' && !isAlnum(c) {
			return false
		}
	}
	return true
}

func istioIsDNS1123Label(v string) bool {
	return len(v) <= istioDNS1123LabelMaxLength && isDNS1123Label(v, true)
}

// istioIsWildcardDNS1123Label matches "*", or a label optionally prefixed
// with "*" or "*-".
func istioIsWildcardDNS1123Label(v string) bool {
	if len(v) > istioDNS1123LabelMaxLength {
		return false
	}
	switch {
	case v == "*":
		return true
	case strings.HasPrefix(v, "*-"):
		// "*-" followed by a label; a label cannot start with '-', so "*"
		// followed by one cannot begin this way either.
		return isDNS1123Label(v[2:], true)
	case strings.HasPrefix(v, "*"):
		return isDNS1123Label(v[1:], true)
	}
	return isDNS1123Label(v, true)
}

// istioValidateLabels ports labels.Instance.Validate. Keys follow the
// Kubernetes label-key syntax (optional DNS prefix <= 253, name <= 63). Values
// must match the qualified-name syntax or be empty; unlike Kubernetes, Istio
// puts no length limit on values, so neither do we.
func istioValidateLabels(labels map[string]string) error {
	valid := true
	for k, v := range labels {
		if istioValidateTagKey(k) != nil || v != "" && !isQualifiedName(v) {
			valid = false
			break
		}
	}
	if valid {
		// The common case needs no order; sorting every label map was a
		// measurable share of conversion.
		return nil
	}
	var errs []error
	for _, k := range sortedKeys(labels) {
		if err := istioValidateTagKey(k); err != nil {
			errs = append(errs, err)
		}
		if v := labels[k]; v != "" && !isQualifiedName(v) {
			errs = append(errs, fmt.Errorf("invalid tag value %q (key %q)", v, k))
		}
	}
	return errors.Join(errs...)
}

func istioValidateTagKey(k string) error {
	// The syntax is an optional DNS-name prefix and '/', then a qualified
	// name; neither part may contain '/', so the split is unambiguous.
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		prefix, name = "", k
	}
	if hasPrefix && !isDNS1123Subdomain(prefix, true) || !isQualifiedName(name) {
		return fmt.Errorf("invalid tag key %q", k)
	}
	if len(prefix) > istioDNSNamePrefixMaxLength {
		return fmt.Errorf("invalid tag key %q (DNS prefix is too long)", k)
	}
	if len(name) > istioDNS1123LabelMaxLength {
		return fmt.Errorf("invalid tag key %q (name is too long)", k)
	}
	return nil
}

// --- pkg/config/protocol/instance.go ---

type istioProtocol string

const (
	istioProtoGRPC        istioProtocol = "GRPC"
	istioProtoGRPCWeb     istioProtocol = "GRPC-Web"
	istioProtoHTTP        istioProtocol = "HTTP"
	istioProtoHTTPProxy   istioProtocol = "HTTP_PROXY"
	istioProtoHTTP2       istioProtocol = "HTTP2"
	istioProtoHTTPS       istioProtocol = "HTTPS"
	istioProtoTCP         istioProtocol = "TCP"
	istioProtoTLS         istioProtocol = "TLS"
	istioProtoUDP         istioProtocol = "UDP"
	istioProtoMongo       istioProtocol = "Mongo"
	istioProtoRedis       istioProtocol = "Redis"
	istioProtoMySQL       istioProtocol = "MySQL"
	istioProtoUnsupported istioProtocol = "UnsupportedProtocol"
)

// istioParseProtocol is case-insensitive; "" parses as unsupported (the
// callers treat the empty protocol specially where Istio does).
func istioParseProtocol(s string) istioProtocol {
	switch strings.ToLower(s) {
	case "tcp":
		return istioProtoTCP
	case "udp":
		return istioProtoUDP
	case "grpc":
		return istioProtoGRPC
	case "grpc-web":
		return istioProtoGRPCWeb
	case "http":
		return istioProtoHTTP
	case "http_proxy":
		return istioProtoHTTPProxy
	case "http2":
		return istioProtoHTTP2
	case "https":
		return istioProtoHTTPS
	case "tls":
		return istioProtoTLS
	case "mongo":
		return istioProtoMongo
	case "redis":
		return istioProtoRedis
	case "mysql":
		return istioProtoMySQL
	}
	return istioProtoUnsupported
}

func (p istioProtocol) isHTTP() bool {
	switch p {
	case istioProtoHTTP, istioProtoHTTP2, istioProtoHTTPProxy, istioProtoGRPC, istioProtoGRPCWeb:
		return true
	}
	return false
}

func (p istioProtocol) isTCP() bool {
	switch p {
	case istioProtoTCP, istioProtoHTTPS, istioProtoTLS, istioProtoMongo, istioProtoRedis, istioProtoMySQL:
		return true
	}
	return false
}

func (p istioProtocol) isTLS() bool {
	return p == istioProtoHTTPS || p == istioProtoTLS
}
