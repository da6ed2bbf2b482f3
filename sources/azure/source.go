// Package azure is the Azure virtual machines source: it lists the VMs of
// one subscription (with their power state) and its network interfaces
// every refreshInterval, through the shared poll helper, and maps each
// service name found in a VM tag to a model.Service under a scope named
// after the service. See README.md for the mapping rules and the options.
package azure

import (
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Source polls Azure Resource Manager: the shared cloud source over this package's lister.
type Source = cloudsource.Source[*lister]

// New makes an Azure source. It does no I/O: the credential and clients are
// made on the first list.
func New(cfg Config, opts sources.Options) (*Source, error) {
	return cloudsource.New(&cfg, &cfg.Config, opts, newLister)
}
