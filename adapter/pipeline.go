package adapter

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/vip"
)

// flush is one pass of the pipeline: the guard commits what it does not
// hold into the store, every dirty host is converted and diffed against what
// was published, and the differences go to the publishers, which apply them.
func (a *Adapter) flush() {
	start := time.Now()
	a.guard.Commit(a.store)
	// Addresses depend on the set of hosts and on what every host's registry
	// claims, so they are decided before conversion, and a host whose
	// address another host's coming or going moved is converted again too.
	var claimRejections []convert.Rejection
	var buf []convert.Contribution
	hosts, refused := a.vips.SyncClaims(a.store.TakeDirty(), func(host string) (bool, []netip.Addr) {
		contribs := a.store.contributionsInto(buf[:0], host)
		buf = contribs
		if len(contribs) == 0 {
			return false, nil
		}
		claims, rejected := convert.Claims(host, contribs, a.opts)
		claimRejections = append(claimRejections, rejected...)
		return true, claims
	})
	a.reportRejections(claimRejections)
	a.reportRefusals(refused)
	if a.writer != nil && (len(hosts) > 0 || a.confirmed) {
		a.writer.offer(stateSnapshot{sources: a.store.snapshot(), asOf: a.restoredAt})
		a.confirmed = false
	}
	results := a.convertHosts(hosts)
	type shardKind struct {
		shard int
		kind  served.Kind
	}
	// Sized before they are filled: a cold sync appends 50k entries.
	sizes := make(map[shardKind]int)
	for i, host := range hosts {
		shard := ShardOf(host, len(a.shards))
		for _, u := range results[i].upserts {
			sizes[shardKind{shard, u.kind}]++
		}
	}
	upserts := make(map[shardKind][]served.Entry, len(sizes))
	for key, n := range sizes {
		upserts[key] = make([]served.Entry, 0, n)
	}
	a.published.reserve(len(hosts))
	deletes := make(map[shardKind][]string)
	counts := make(map[served.Kind][2]int)
	for i, host := range hosts {
		res := &results[i]
		a.reportRejections(res.rejected)
		for _, err := range res.errs {
			a.log.Error("cannot serialize resource; leaving it out", zap.Error(err))
		}
		shard := ShardOf(host, len(a.shards))
		for _, u := range res.upserts {
			key := shardKind{shard, u.kind}
			upserts[key] = append(upserts[key], u.entry)
		}
		for kind, names := range res.deletes {
			key := shardKind{shard, kind}
			deletes[key] = append(deletes[key], names...)
		}
		a.published.commit(host, res.published)
	}
	changed := false
	for shard, pub := range a.shards {
		for _, kind := range served.Kinds {
			key := shardKind{shard, kind}
			u, d := upserts[key], deletes[key]
			if len(u) == 0 && len(d) == 0 {
				continue
			}
			changed = pub.Apply(kind, u, d) || changed
			c := counts[kind]
			c[0] += len(u)
			c[1] += len(d)
			counts[kind] = c
		}
	}
	fields := []zap.Field{zap.Int("hostsChanged", len(hosts))}
	for _, kind := range served.Kinds {
		c, ok := counts[kind]
		if !ok {
			continue
		}
		fields = append(fields, zap.Int(string(kind)+"Upserts", c[0]), zap.Int(string(kind)+"Deletes", c[1]))
		a.metrics.applied.WithLabelValues(string(kind), "upsert").Add(float64(c[0]))
		a.metrics.applied.WithLabelValues(string(kind), "delete").Add(float64(c[1]))
	}
	a.metrics.windows.Inc()
	a.metrics.flushDuration.Observe(time.Since(start).Seconds())
	a.metrics.hosts.Set(float64(len(a.store.hosts)))
	if changed {
		a.log.Info("published changes", append(fields, zap.Duration("took", time.Since(start)))...)
	} else if len(hosts) > 0 {
		a.log.Debug("refresh changed nothing", fields...)
	}
	a.warnSelectorCost()
}

// workloadEntriesWarnAt is the number of WorkloadEntries, all in one
// namespace, from which the adapter warns about istiod's cost. Measured with
// the real istiod (BENCHMARKS.md, "inline against workloadentry mode"): 3,000
// WorkloadEntries settled in 4.8 s of istiod CPU, 9,000 in 163 s, 30,000 not
// within 20 minutes. istiod matches every ServiceEntry's workloadSelector
// against every WorkloadEntry of the namespace.
const workloadEntriesWarnAt = 5000

// warnSelectorCost logs once, in workloadentry mode, when the served
// WorkloadEntries pass workloadEntriesWarnAt: the default mode is the one
// that does not scale in istiod, and an operator should hear it from the
// adapter rather than from an istiod that never settles.
func (a *Adapter) warnSelectorCost() {
	if a.warnedSelectorCost || a.opts.Mode != convert.ModeWorkloadEntry || a.opts.NamespaceLayout == convert.LayoutPerService {
		return
	}
	n := a.published.Count(served.KindWorkloadEntry)
	if n <= workloadEntriesWarnAt {
		return
	}
	a.warnedSelectorCost = true
	a.log.Warn("serving many WorkloadEntries in one namespace: istiod's cost to process them grows with the square of their number (measured: 9,000 took 163 s of istiod CPU, 30,000 did not settle in 20 minutes); set output.mode: inline (the default) unless you need WorkloadEntries, or output.namespaceLayout: perService (docs/configuration.md, WorkloadEntry layouts)",
		zap.Int("workloadEntries", n), zap.String("namespace", a.opts.Namespace))
}

// ShardOf is the shard of host among k: a stable hash, the same in every
// process and replica, so that a host never moves between config sources
// while the shard count stays the same.
func ShardOf(host string, k int) int {
	if k <= 1 {
		return 0
	}
	return int(xxhash.Sum64String(host) % uint64(k))
}

// hostResult is one host's conversion, diffed against what was published.
// It keeps no converted resource: their specs are garbage as soon as they are
// serialized, which at a cold sync of 50k services halves the peak heap.
type hostResult struct {
	published []publishedResource
	rejected  []convert.Rejection
	upserts   []kindEntry
	deletes   map[served.Kind][]string
	errs      []error
}

type kindEntry struct {
	kind  served.Kind
	entry served.Entry
}

// parallelFrom is the number of dirty hosts from which conversion is spread
// over every CPU; below it, goroutines cost more than they save.
const parallelFrom = 256

// convertHosts converts, diffs and serializes every host. It reads the store
// and the published state and writes neither, so hosts are converted in
// parallel: a cold sync or a restart of a large source converts tens of
// thousands of hosts, which is most of the time istiod waits for its first
// reply.
func (a *Adapter) convertHosts(hosts []string) []hostResult {
	results := make([]hostResult, len(hosts))
	workers := min(runtime.GOMAXPROCS(0), len(hosts)/parallelFrom+1)
	for len(a.scratches) < workers {
		a.scratches = append(a.scratches, new(convert.Scratch))
	}
	if workers <= 1 {
		var buf []convert.Contribution
		for i, h := range hosts {
			results[i], buf = a.convertHost(h, buf, a.scratches[0])
		}
		return results
	}
	var next atomic.Int64
	const chunk = 64
	var wg sync.WaitGroup
	for w := range workers {
		scratch := a.scratches[w]
		wg.Go(func() {
			var buf []convert.Contribution
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= len(hosts) {
					return
				}
				for i := lo; i < min(lo+chunk, len(hosts)); i++ {
					results[i], buf = a.convertHost(hosts[i], buf, scratch)
				}
			}
		})
	}
	wg.Wait()
	return results
}

// convertHost converts one host; buf is the caller's buffer for its
// contributions, returned for the next host (conversion keeps none of it),
// and scratch its maps: nothing of the converted resources but their
// serialized form (entries, keys, versions) outlives the call.
func (a *Adapter) convertHost(host string, buf []convert.Contribution, scratch *convert.Scratch) (hostResult, []convert.Contribution) {
	contribs := a.store.contributionsInto(buf[:0], host)
	desired, rejected := convert.ServiceAtReusing(host, a.vips.Addresses(host), contribs, a.opts, scratch)
	res := hostResult{rejected: rejected}
	a.published.diff(host, desired, func(kind served.Kind, r *served.Resource, del string) {
		if r == nil {
			if res.deletes == nil {
				res.deletes = make(map[served.Kind][]string, 1)
			}
			res.deletes[kind] = append(res.deletes[kind], del)
			return
		}
		// Serialized straight into the form every reply shares.
		entry, err := r.Entry()
		if err != nil {
			res.errs = append(res.errs, fmt.Errorf("%s %s: %w", kind, r.Key(), err))
			desired = without(desired, r)
			return
		}
		res.upserts = append(res.upserts, kindEntry{kind, entry})
	})
	res.published = publishedList(desired)
	clear(contribs) // no model kept alive by the buffer
	return res, contribs
}

func without(rs []*served.Resource, drop *served.Resource) []*served.Resource {
	out := rs[:0:0]
	for _, r := range rs {
		if r != drop {
			out = append(out, r)
		}
	}
	return out
}

// reportRefusals reports the registry addresses a host is not served with,
// each once for as long as it lasts (vip.Allocator.SyncClaims): a refused
// address is an attempt, or a mistake, the operator should hear of, but
// not again at every change of the service's instances.
func (a *Adapter) reportRefusals(refused []vip.Refusal) {
	if len(refused) == 0 {
		return
	}
	rejected := make([]convert.Rejection, 0, len(refused))
	for _, r := range refused {
		source := ""
		if c := a.store.Contributions(r.Host); len(c) > 0 {
			source = c[0].Source
		}
		instead := "no address (output.addresses.allocate: [none])"
		if addrs := a.vips.Addresses(r.Host); len(addrs) > 0 {
			instead = strings.Join(addrs, ", ")
		}
		rejected = append(rejected, convert.Rejection{Kind: served.KindServiceEntry, Name: r.Host, Source: source,
			Code: convert.CodeRefusedAddress, Reason: r.Reason + "; serving the service with " + instead})
	}
	a.reportRejections(rejected)
}

func (a *Adapter) reportRejections(rejected []convert.Rejection) {
	for _, r := range rejected {
		if a.onReject != nil {
			a.onReject(r)
			continue
		}
		if ok, held := a.rejectLog.Allow(); ok {
			a.log.Warn("left out of what istiod receives",
				zap.String("source", r.Source), zap.String("kind", string(r.Kind)), zap.String("item", r.Name),
				zap.String("code", r.Code), zap.String("reason", r.Reason), zap.Int(sources.HeldBackField, held))
		}
		a.metrics.rejected.WithLabelValues(r.Source, r.Code).Inc()
	}
}
