package adapter

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/convert"
)

// Render runs every source until it has delivered its first full state, then
// converts everything, as `registry-adapter render` prints it. Resources come
// ServiceEntries first, then WorkloadEntries, each sorted by name.
func Render(ctx context.Context, srcs []NamedSource, opts convert.Options, log *zap.Logger) ([]*convert.Resource, []convert.Rejection, error) {
	// Render shows what the registries say now: no guard.
	a := New(srcs, Settings{Output: opts, Guard: GuardConfig{MaxDeletionShare: 1}}, nil, nil, log)
	ctx, cancel := context.WithCancel(ctx)
	updates := make(chan update)
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runSource(ctx, s, updates)
		}()
	}
	synced := map[string]bool{}
	var err error
	for len(synced) < len(srcs) && err == nil {
		select {
		case u := <-updates:
			a.apply(u)
			synced[u.source] = true
		case <-ctx.Done():
			var waiting []string
			for _, s := range srcs {
				if !synced[s.Name] {
					waiting = append(waiting, fmt.Sprintf("%s (%s)", s.Name, s.Reporter.Status().LastError))
				}
			}
			err = fmt.Errorf("render: sources not synced: %s: %w", strings.Join(waiting, ", "), ctx.Err())
		}
	}
	cancel()
	wg.Wait()
	if err != nil {
		return nil, nil, err
	}
	a.commitStaged()
	var out []*convert.Resource
	var rejected []convert.Rejection
	for _, host := range a.store.Hosts() {
		res, rej := convert.Service(host, a.store.Contributions(host), opts)
		out = append(out, res...)
		rejected = append(rejected, rej...)
	}
	SortResources(out)
	return out, rejected, nil
}

// SortResources orders resources the way they are applied: ServiceEntries
// before the WorkloadEntries they select, each kind by name.
func SortResources(rs []*convert.Resource) {
	rank := func(k convert.Kind) int { return slices.Index(convert.Kinds, k) }
	slices.SortFunc(rs, func(a, b *convert.Resource) int {
		return cmp.Or(cmp.Compare(rank(a.Kind), rank(b.Kind)), cmp.Compare(a.Key(), b.Key()))
	})
}
