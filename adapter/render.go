package adapter

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
)

// Render runs every source until it has delivered its first full state, then
// passes it once through the same pipeline the daemon runs (store, convert,
// diff, serialize) into a publisher that collects it, as
// `registry-adapter render` prints it. Resources come ServiceEntries first,
// then WorkloadEntries, each sorted by name.
func Render(ctx context.Context, srcs []NamedSource, opts convert.Options, log *zap.Logger) ([]*served.Resource, []convert.Rejection, error) {
	var c collector
	// Render shows what the registries say now: no guard.
	guard := GuardConfig{MaxDeletionShare: 1}
	guard.SetDefaults()
	a := New(srcs, Settings{Output: opts, Guard: guard}, &c, nil, log)
	var rejected []convert.Rejection
	a.onReject = func(r convert.Rejection) { rejected = append(rejected, r) }
	if err := a.run(ctx, true); err != nil {
		return nil, nil, fmt.Errorf("render: %w", err)
	}
	out := make([]*served.Resource, 0, len(c.entries))
	for _, e := range c.entries {
		r, err := served.Decode(e.Resource)
		if err != nil {
			return nil, nil, fmt.Errorf("render: %s: %w", e.Name, err)
		}
		out = append(out, r)
	}
	SortResources(out)
	return out, rejected, nil
}

// collector is the publisher of a render: it keeps every upsert. A render
// publishes once, into nothing, so there are no deletes.
type collector struct{ entries []served.Entry }

func (c *collector) Apply(_ served.Kind, upserts []served.Entry, _ []string) bool {
	c.entries = append(c.entries, upserts...)
	return len(upserts) > 0
}

func (c *collector) MarkReady() {}

// SortResources orders resources the way they are applied: ServiceEntries
// before the WorkloadEntries they select, each kind by name.
func SortResources(rs []*served.Resource) {
	rank := func(k served.Kind) int { return slices.Index(served.Kinds, k) }
	slices.SortFunc(rs, func(a, b *served.Resource) int {
		return cmp.Or(cmp.Compare(rank(a.Kind), rank(b.Kind)), cmp.Compare(a.Key(), b.Key()))
	})
}
