// Package poll runs registries that can only be listed, not watched (cloud
// instance APIs): a full list every interval, diffed against the last good
// list, so only real changes go downstream. A failed list never publishes
// anything: deletions inferred from an error would empty istiod's view.
package poll

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Lister returns the complete current state of a registry. It is called with
// a context bounded by Config.Timeout and must follow pagination to the end:
// a partial list is an error, not a smaller state.
type Lister interface {
	List(ctx context.Context) ([]model.Group, error)
}

// ListerFunc adapts a function to Lister.
type ListerFunc func(ctx context.Context) ([]model.Group, error)

// List calls f.
func (f ListerFunc) List(ctx context.Context) ([]model.Group, error) { return f(ctx) }

// Config is the polling schedule shared by every polling source.
type Config struct {
	// RefreshInterval is the time between two lists (default 30s). Each wait
	// is jittered by up to a tenth, so replicas do not poll in step.
	RefreshInterval time.Duration `yaml:"refreshInterval"`
	// Timeout bounds one complete list, pagination included (default 1m).
	Timeout time.Duration `yaml:"timeout"`
	// MaxBackoff caps the wait after consecutive errors (default 5m).
	MaxBackoff time.Duration `yaml:"maxBackoff"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 30 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = time.Minute
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Minute
	}
}

// Validate reports an invalid schedule.
func (c *Config) Validate() error {
	if c.RefreshInterval < time.Second {
		return fmt.Errorf("refreshInterval %s: must be at least 1s", c.RefreshInterval)
	}
	if c.Timeout <= 0 || c.MaxBackoff <= 0 {
		return fmt.Errorf("timeout %s and maxBackoff %s must be positive", c.Timeout, c.MaxBackoff)
	}
	return nil
}

// ThrottledError is what a Lister returns when the API throttles it (EC2
// RequestLimitExceeded, GCE rateLimitExceeded, Azure 429). RetryAfter is the
// API's hint, zero when it gave none.
type ThrottledError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string { return "throttled: " + e.Err.Error() }
func (e *ThrottledError) Unwrap() error { return e.Err }

// ErrorKind classifies a list error for the errors metric.
func ErrorKind(err error) string {
	var throttled *ThrottledError
	var pe *sources.PanicError
	switch {
	case errors.As(err, &pe):
		return "panic"
	case errors.As(err, &throttled):
		return "throttled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "api"
	}
}

// Source polls a Lister. It implements sources.Source.
type Source struct {
	cfg    Config
	lister Lister
	log    *zap.Logger
	rep    *sources.Reporter
	// jitter returns a random duration in [0, d); replaced in tests.
	jitter func(d time.Duration) time.Duration
}

var _ sources.Source = (*Source)(nil)

// New returns a polling source. cfg must be defaulted and valid.
func New(cfg Config, lister Lister, opts sources.Options) *Source {
	return &Source{
		cfg: cfg, lister: lister, log: opts.Logger, rep: opts.Reporter,
		jitter: func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		},
	}
}

// Run lists until ctx is done. The first successful list is sent whole; later
// lists send only the scopes whose content changed, and empty groups for
// scopes that disappeared.
func (s *Source) Run(ctx context.Context, out chan<- []model.Group) error {
	var last map[string]model.Group
	failures := 0
	for {
		start := time.Now()
		listCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		var groups []model.Group
		// A panic in the lister (its mapping of the answer, an SDK bug) is
		// a failed list like any other: the last good state stays, and the
		// next list is tried after the backoff.
		err := sources.Catch("listing the registry", func() error {
			var err error
			groups, err = s.lister.List(listCtx)
			return err
		})
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		wait := s.cfg.RefreshInterval + s.jitter(s.cfg.RefreshInterval/10)
		if err != nil {
			failures++
			kind := ErrorKind(err)
			s.rep.Failed(kind, err)
			wait = s.backoff(failures, err)
			fields := []zap.Field{zap.String("kind", kind), zap.Int("consecutiveFailures", failures),
				zap.Duration("retryIn", wait), zap.Error(err)}
			var pe *sources.PanicError
			if errors.As(err, &pe) {
				fields = append(fields, zap.ByteString("stack", pe.Stack))
			}
			s.log.Warn("list failed; keeping the last good state", fields...)
		} else {
			failures = 0
			current := make(map[string]model.Group, len(groups))
			for _, g := range groups {
				current[g.Scope] = g
			}
			changed := diff(last, current)
			if last == nil {
				changed = groups
			}
			// Status first: whoever reads the batch must not see a stale
			// status for it.
			services, instances := count(groups)
			s.rep.Synced(time.Since(start), services, instances)
			if last == nil || len(changed) > 0 {
				select {
				case out <- changed:
				case <-ctx.Done():
					return nil
				}
			}
			last = current
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
	}
}

// backoff doubles the wait per consecutive failure from a tenth of the
// interval, honours an API's Retry-After when it asks for longer, and is
// capped by MaxBackoff, Retry-After included: an API (or whoever stands
// in for it) must not be able to stop the source for longer.
func (s *Source) backoff(failures int, err error) time.Duration {
	base := max(s.cfg.RefreshInterval/10, time.Second)
	d := base << min(failures-1, 20)
	if d > s.cfg.MaxBackoff || d <= 0 {
		d = s.cfg.MaxBackoff
	}
	var throttled *ThrottledError
	if errors.As(err, &throttled) && throttled.RetryAfter > d {
		d = min(throttled.RetryAfter, s.cfg.MaxBackoff)
	}
	return d + s.jitter(d/10)
}

// diff returns the groups of current that differ from last, and an empty
// group for each scope of last that current lacks. Leaving out an equal
// group is a saving (no batch, no debounce window), not the guarantee,
// which is the content version of what is served.
func diff(last, current map[string]model.Group) []model.Group {
	var out []model.Group
	for scope, g := range current {
		if old, ok := last[scope]; !ok || !old.Equal(g) {
			out = append(out, g)
		}
	}
	for scope := range last {
		if _, ok := current[scope]; !ok {
			out = append(out, model.Group{Scope: scope})
		}
	}
	return out
}

func count(groups []model.Group) (services, instances int) {
	for _, g := range groups {
		services += len(g.Services)
		for _, svc := range g.Services {
			instances += len(svc.Instances)
		}
	}
	return services, instances
}
