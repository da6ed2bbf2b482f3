package adapter

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// runSource runs one source, restarting it if it fails, and forwards its
// batches until ctx is done. The store keeps the source's last state while
// it restarts: a crashed watcher must not empty istiod's view.
func (a *Adapter) runSource(ctx context.Context, s NamedSource, updates chan<- update) {
	log := a.log.With(zap.String("source", s.Name))
	// One per source, across its restarts: a registrant's data must not
	// flood the log (sources.LogLimit).
	warnings := sources.NewLogLimit(sources.LogBurst, sources.LogEvery)
	var resets uint64
	if s.Reporter != nil {
		resets = s.Reporter.Resets()
	}
	for {
		out := make(chan []model.Group)
		done := make(chan error, 1)
		// Each run has its own context, so that a batch beyond the source's
		// caps can stop this run alone.
		runCtx, cancelRun := context.WithCancel(ctx)
		tally := newSourceTally(s.Name, s.Limits)
		go func() {
			// A panicking source (a nil map in a registry answer, an SDK bug)
			// is a crash like any other: recovered, reported, restarted with
			// backoff, its last state kept. It must not take the process and
			// every other source with it.
			defer func() {
				if r := recover(); r != nil {
					done <- fmt.Errorf("panic: %v\n%s", r, debug.Stack())
				}
			}()
			done <- s.Source.Run(runCtx, out)
		}()
		first := true
	forward:
		for {
			select {
			case groups := <-out:
				groups, left, err := tally.admit(groups, first)
				a.reportLeftOut(log, s.Name, left, warnings)
				if err != nil {
					// Not applied: the source keeps its last good state. The
					// restart makes it send its whole state again, so that
					// what it sends later is not a change to a state the
					// adapter never took.
					log.Error("source exceeds a limit; keeping its last good state and restarting it", zap.Error(err))
					if s.Reporter != nil {
						s.Reporter.Failed("limit", err)
					}
					cancelRun()
					a.awaitStop(log, done)
					break forward
				}
				u := update{source: s.Name, groups: groups, full: first}
				if s.Reporter != nil {
					// A source reports a reset before it sends what follows.
					if n := s.Reporter.Resets(); n != resets {
						resets, u.reset = n, true
					}
				}
				select {
				case updates <- u:
					first = false
				case <-ctx.Done():
					cancelRun()
					a.awaitStop(log, done)
					return
				}
			case err := <-done:
				cancelRun()
				if ctx.Err() != nil {
					return
				}
				log.Error("source stopped unexpectedly; keeping its last state and restarting", zap.Error(err))
				if err != nil && s.Reporter != nil {
					kind := "crashed"
					if pe := (*sources.PanicError)(nil); errors.As(err, &pe) {
						kind = "panic" // recovered by the source itself, on one of its goroutines
					}
					s.Reporter.Failed(kind, err)
				}
				break forward
			case <-ctx.Done():
				cancelRun()
				a.awaitStop(log, done)
				return
			}
		}
		cancelRun()
		select {
		case <-time.After(a.restartBackoff):
		case <-ctx.Done():
			return
		}
	}
}

// reportLeftOut logs (within the source's warning budget) and counts the
// items a per-item cap left out of a batch.
func (a *Adapter) reportLeftOut(log *zap.Logger, source string, left []string, warnings *sources.LogLimit) {
	for _, why := range left {
		a.metrics.rejected.WithLabelValues(source, "limit").Inc()
		if ok, held := warnings.Allow(); ok {
			log.Warn("left out of what istiod receives: over a per-item limit", zap.String("reason", why),
				zap.Int(sources.HeldBackField, held))
		}
	}
}

// awaitStop waits for a source to return after its context ended, but not
// longer than stopTimeout: a source that ignores its context (a client call
// without one, a stuck SDK) must not hang shutdown. Its goroutine is left
// behind, blocked at worst on a channel nobody reads; the process is exiting.
func (a *Adapter) awaitStop(log *zap.Logger, done <-chan error) {
	t := time.NewTimer(a.stopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Error("source did not stop within the shutdown timeout; leaving it behind",
			zap.Duration("timeout", a.stopTimeout))
	}
}
