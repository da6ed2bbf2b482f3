package sources

import "strings"

// Warner is implemented by a source configuration that is valid but risky
// or likely wrong. Each warning names its key; a source logs them when it
// is built (so `run` logs them at start and `validate` prints them).
type Warner interface {
	Warnings() []string
}

// HostTemplateRisk returns why a host template lets whoever registers a
// service choose hosts that are not the registry's, or "". render renders
// the template for a service name a registrant chose, every other field at
// its configured or sample value.
//
// The host is what istiod routes by: a registration whose host is
// kubernetes.default.svc.cluster.local, or an outside API's name, becomes a
// ServiceEntry for that host, and a sidecar that does not prefer another
// entry for it sends its traffic to the registrant's endpoints. A template
// with a fixed domain after the name ("{{.Service}}.service.consul") keeps
// every registry host inside that domain.
func HostTemplateRisk(render func(service string) (string, error)) string {
	const anyHost = "kubernetes.default.svc.cluster.local"
	if h, err := render(anyHost); err == nil && h == anyHost {
		return "the host is the registry's service name alone, so whoever registers a service chooses its whole host " +
			"(kubernetes.default.svc.cluster.local, an outside API's name) and where the mesh sends that name's traffic; " +
			`put a domain of the registry's own after the name, as the default does ("{{.Service}}.service.consul")`
	}
	if h, err := render("web"); err == nil && (strings.HasSuffix(h, ".cluster.local") || strings.HasSuffix(h, ".svc")) {
		return "hosts end in the Kubernetes cluster domain, so whoever registers a service named after a Kubernetes " +
			"Service (kubernetes.default) takes that Service's host; choose a domain of the registry's own"
	}
	return ""
}
