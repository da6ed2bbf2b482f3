// Package validation runs istiod's validation of ServiceEntry,
// WorkloadEntry, DestinationRule and VirtualService before the adapter
// serves them. istiod never NACKs MCP
// config: a resource that fails validation is logged and discarded, so the
// only way to notice is to run the same rules first.
//
// The files mirror the upstream files they port (Apache-2.0, istio/istio
// release 1.30/1.31 era, and Kubernetes apimachinery), one file per upstream
// file, so that each can be re-read side by side with upstream at every Istio
// release:
//
//	validation.go   pkg/config/validation/validation.go: ValidateServiceEntry,
//	                ValidateWorkloadEntry, validateExportTo, ValidatePortName,
//	                ValidateProtocol, ValidateUnixAddress, usesWaypoint,
//	                validateMetadata (checkDryRunAnnotation, AlwaysReject,
//	                internal parent annotations); ValidateDestinationRule
//	                (validateTrafficPolicy, validateConnectionPool,
//	                validateLoadBalancer, isPrime, validateSubsetName) and
//	                ValidateVirtualService for the fields the adapter sets,
//	                and the header name and value checks
//	virtualservice.go pkg/config/validation/virtualservice.go: validateHTTPRoute
//	                and what it calls (string matches, destinations,
//	                retries, rewrites, header operations)
//	headervalue.go  pkg/config/validation/header_value_validator.go
//	agent.go        pkg/config/validation/agent/validation.go: ValidatePort,
//	                ValidateFQDN, ValidateWildcardDomain, ValidateDNS1123Labels,
//	                CheckDNS1123Preconditions, ValidateIPAddress, ValidateIPSubnet,
//	                ValidateDuration
//	labels.go       pkg/config/labels/instance.go: Instance.Validate,
//	                IsDNS1123Label, IsWildcardDNS1123Label
//	protocol.go     pkg/config/protocol/instance.go: Parse, IsHTTP, IsTCP, IsTLS
//	visibility.go   pkg/config/visibility/visibility.go: Instance.Validate
//	net.go          pkg/util/net/ip.go: IsValidIPAddress
//	apimachinery.go k8s.io/apimachinery/pkg/util/validation: IsDNS1123Label,
//	                IsDNS1123Subdomain, IsQualifiedName, IsValidLabelValue
//	name.go         istiod's MCP client (mcpToPilot) and the Kubernetes
//	                object-name rules for metadata.name and metadata.namespace
//
// Only rules that make istiod reject the resource are ported; Istio's
// warnings (partial wildcards, TCP ports without addresses, workloadSelector
// with resolution NONE, unset address with a network, ...) are accepted. The
// messages are our own: each names the field and the offending value.
//
// The package depends on nothing of the adapter's but model (for the
// protocol names); convert calls it, never the other way round.
package validation
