// Package gce is the Google Compute Engine source: it lists the instances of
// one project with instances.aggregatedList every refreshInterval (through
// the shared poll helper) and maps each service name found in an instance
// label to a model.Service under a scope named after the service. See
// README.md for the mapping rules and the options.
package gce

import (
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Source polls Compute Engine: the shared cloud source over this package's lister.
type Source = cloudsource.Source[*lister]

// New makes a GCE source. It does no I/O: credentials are looked up on the
// first list.
func New(cfg Config, opts sources.Options) (*Source, error) {
	return cloudsource.New(&cfg, &cfg.Config, opts, newLister)
}
