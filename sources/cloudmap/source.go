// Package cloudmap is the AWS Cloud Map source: every refreshInterval
// (through the shared poll helper) it reads the instances of the services
// of one namespace with ListInstances and GetInstancesHealthStatus (every
// page: DiscoverInstances stops at 1000), skipping a service whose
// DiscoverInstancesRevision did not change, and maps each service to a
// model.Service under a scope named after it. See README.md for the mapping
// rules and the options.
package cloudmap

import (
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Source polls Cloud Map: the shared cloud source over this package's lister.
type Source = cloudsource.Source[*lister]

// New makes a Cloud Map source. It does no I/O: the credential chain is
// read on the first list.
func New(cfg Config, opts sources.Options) (*Source, error) {
	return cloudsource.New(&cfg, &cfg.Config, opts, newLister)
}
