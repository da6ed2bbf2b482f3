// Package kinds lists every kind of source this binary can run, one line
// each. It alone imports every source package; adding a source is a package
// of its own (whose *Config implements sources.Config) plus its line here.
// The list is explicit, not filled by init() registration, so that what the
// binary can watch is read in one place.
package kinds

import (
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/azure"
	"github.com/registry-adapter/registry-adapter/sources/cloudmap"
	"github.com/registry-adapter/registry-adapter/sources/consul"
	"github.com/registry-adapter/registry-adapter/sources/ec2"
	"github.com/registry-adapter/registry-adapter/sources/gce"
	"github.com/registry-adapter/registry-adapter/sources/static"
)

// All is every kind of source, in the order configuration errors list them.
var All = []sources.Kind{
	sources.KindOf[static.Config](),
	sources.KindOf[consul.Config](),
	sources.KindOf[gce.Config](),
	sources.KindOf[azure.Config](),
	sources.KindOf[ec2.Config](),
	sources.KindOf[cloudmap.Config](),
}

// Lookup returns the kind whose key is key.
func Lookup(key string) (sources.Kind, bool) {
	for _, k := range All {
		if k.Key == key {
			return k, true
		}
	}
	return sources.Kind{}, false
}
