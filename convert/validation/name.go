package validation

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidResourceName marks errors about a resource's name or namespace,
// as opposed to its spec. istiod's MCP client only requires that
// "namespace/name" splits into exactly two parts (neither may contain '/');
// the stricter Kubernetes DNS-1123 rules checked here are what a resource
// name must satisfy anywhere else in a mesh. Use errors.Is to tell them
// apart from spec errors.
var ErrInvalidResourceName = errors.New("invalid resource name")

// ResourceName checks the name and namespace of a config resource. Every
// error it returns wraps ErrInvalidResourceName.
func ResourceName(name, namespace string) error {
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
	case !IsDNS1123Label(namespace):
		bad("metadata.namespace %q: must be a lowercase RFC 1123 label of at most 63 characters", namespace)
	}
	switch {
	case name == "":
		bad("metadata.name: must not be empty")
	case !IsDNS1123Subdomain(name):
		bad("metadata.name %q: must be a lowercase RFC 1123 subdomain of at most 253 characters", name)
	}
	return errors.Join(errs...)
}
