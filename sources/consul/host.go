package consul

import (
	"text/template"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/sources"
)

// A service's host: hostTemplate (peerHostTemplate for a service imported
// from a cluster peer) over hostData, made a host by the one policy of every
// source.

// hostData is what the host templates can use.
type hostData struct {
	Service    string
	Datacenter string
	Namespace  string
	Partition  string
	Peer       string
}

// hostSample is what a host template is tried on at start.
var hostSample = hostData{Service: "web", Datacenter: "dc1", Namespace: "default", Partition: "default", Peer: "peer"}

// parseHostTemplate parses a Consul host template (sources.ParseHostTemplate,
// the template helper of every source) over hostData.
func parseHostTemplate(field, text string) (*template.Template, error) {
	return sources.ParseHostTemplate(field, text, hostSample)
}

// renderHost makes a host from a Consul host template, by the one host
// policy of every source (sources.RenderHost).
func renderHost(t *template.Template, d hostData) (string, error) { return sources.RenderHost(t, d) }

// host renders the host of a service: the namespace and partition are those
// of its first eligible instance, else the configured ones.
func (m *mapper) host(name, peer, dc string, first *api.AgentService) (string, error) {
	hd := hostData{Service: name, Datacenter: dc, Namespace: firstNonEmpty(first.Namespace, m.namespace),
		Partition: firstNonEmpty(first.Partition, m.partition), Peer: peer}
	tmpl := m.hostTmpl
	if peer != "" {
		tmpl = m.peerHostTmpl
	}
	return renderHost(tmpl, hd)
}
