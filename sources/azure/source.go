// Package azure is the Azure virtual machines source: it lists the VMs of
// one subscription (with their power state) and its network interfaces
// every refreshInterval, through the shared poll helper, and maps each
// service name found in a VM tag to a model.Service under a scope named
// after the service. See README.md for the mapping rules and the options.
package azure

import (
	"strings"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Source polls Azure Resource Manager: the shared cloud source over this package's lister.
type Source = cloudsource.Source[*lister]

var _ sources.Source = (*Source)(nil)

// New makes an Azure source. It does no I/O: the credential and clients are
// made on the first list.
func New(cfg Config, opts sources.Options) (*Source, error) {
	if err := cloudsource.Prepare(&cfg, &opts); err != nil {
		return nil, err
	}
	m, err := newMapper(&cfg)
	if err != nil {
		return nil, err
	}
	met := newMetrics(opts.Name)
	l := &lister{problems: cloudsource.NewProblemLog(opts.Logger, "VM left out of the mesh"), cfg: &cfg, mapper: m, metrics: met, log: opts.Logger,
		health: cloudsource.NewHealthBook()}
	if u := cfg.Endpoint; strings.HasPrefix(u, "http://") {
		opts.Logger.Warn("endpoint is plain http: access tokens are sent in clear text", zap.String("endpoint", u))
	}
	return cloudsource.NewSource(cfg.Config, l, met, opts)
}
