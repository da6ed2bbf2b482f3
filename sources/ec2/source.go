// Package ec2 is the AWS EC2 source: it lists the running instances of one
// region with DescribeInstances every refreshInterval (through the shared
// poll helper) and maps each service name found in an instance tag to a
// model.Service under a scope named after the service. See README.md for
// the mapping rules and the options.
package ec2

import (
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Source polls EC2: the shared cloud source over this package's lister.
type Source = cloudsource.Source[*lister]

// New makes an EC2 source. It does no I/O: the credential chain is read on
// the first list.
func New(cfg Config, opts sources.Options) (*Source, error) {
	return cloudsource.New(&cfg, &cfg.Config, opts, newLister)
}
