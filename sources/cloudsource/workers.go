package cloudsource

import (
	"golang.org/x/sync/errgroup"

	"github.com/registry-adapter/registry-adapter/sources"
)

// Go runs f on g, turning a panic in it into its error (sources.Catch). A
// lister that reads in parallel (Cloud Map, one service per worker) must
// use it: the poll loop recovers a panic of the list itself, but not one on
// another goroutine, which would end the process. The list then fails with
// the panic (kind "panic"), and the source keeps its last good state.
func Go(g *errgroup.Group, what string, f func() error) {
	g.Go(func() error { return sources.Catch(what, f) })
}
