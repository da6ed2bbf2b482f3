// Package cloudsource is what the cloud sources (ec2, cloudmap, gce, azure)
// share to turn a cloud's instances into services, whatever the registry:
// the decisions every source makes on an instance (Rules.Map:
// auto-registration, opt-out, the service and ports keys, no address) and
// its result (Mapped, Result), service names from a tag or label, port
// lists, the address types, the configuration fields they have in common,
// the API client made on first use (Client), the constructor (New),
// Retry-After hints, and their per-source metrics. (The host template is
// every source's: sources.ParseHostTemplate.)
//
// A cloud source keeps what its API alone knows: how to list, whether an
// instance runs, and where its tags, address, zone, identity and health
// are in its wire format. Nothing here calls a cloud API: SDK setup and
// error classification stay with each cloud (sources/awsapi for AWS).
package cloudsource

import (
	"context"

	"go.uber.org/zap"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Prepare readies what a cloud source's constructor receives: it fills in
// and validates cfg, logs its warnings (sources.Warner), then the options a
// caller may leave unset (a logger that discards, a reporter without
// metrics).
func Prepare(cfg interface {
	SetDefaults()
	Validate() error
}, opts *sources.Options) error {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if w, ok := cfg.(sources.Warner); ok {
		for _, msg := range w.Warnings() {
			opts.Logger.Warn("risky configuration: " + msg)
		}
	}
	if opts.Reporter == nil {
		opts.Reporter = sources.NewReporter(opts.Name, nil)
	}
	return nil
}

// New builds a cloud source: it readies cfg and opts (Prepare), makes the
// lister and its metrics with newLister, then the source polling the
// lister on schedule (NewSource). schedule points into cfg: it is read
// once Prepare has filled in its defaults.
func New[C interface {
	SetDefaults()
	Validate() error
}, L Lister](cfg C, schedule *poll.Config, opts sources.Options, newLister func(C, sources.Options) (L, prometheus.Collector, error),
) (*Source[L], error) {
	if err := Prepare(cfg, &opts); err != nil {
		return nil, err
	}
	l, metrics, err := newLister(cfg, opts)
	if err != nil {
		return nil, err
	}
	return NewSource(*schedule, l, metrics, opts)
}

// AsSource returns what a source's New returned as a sources.Source, for
// its Config's New: nil, not a nil *Source, with an error.
func AsSource[L Lister](s *Source[L], err error) (sources.Source, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Lister is what a cloud source lists its registry with: a poll.Lister
// whose API client holds connections.
type Lister interface {
	poll.Lister
	// CloseIdleConnections releases the idle connections of the API
	// client; the client stays usable.
	CloseIdleConnections()
}

// Source is a cloud source: the shared poll loop over the source's lister.
// Every cloud source is one, built the same way by NewSource.
type Source[L Lister] struct {
	// Lister is the source's own; tests reach into it.
	Lister L
	// Poll runs the schedule; tests replace it with a faster one.
	Poll *poll.Source
}

var _ sources.Source = (*Source[Lister])(nil)

// NewSource returns the source polling l on schedule, and registers its
// metrics with opts.Registerer. opts must have been through Prepare.
func NewSource[L Lister](schedule poll.Config, l L, metrics prometheus.Collector, opts sources.Options) (*Source[L], error) {
	if err := opts.Register(metrics); err != nil {
		return nil, err
	}
	return &Source[L]{Lister: l, Poll: poll.New(schedule, l, opts)}, nil
}

// Run polls until ctx is done (see sources.Source), then releases the idle
// connections, so that a source that is stopped, or restarted after a
// failure, leaves none behind.
func (s *Source[L]) Run(ctx context.Context, out chan<- []model.Group) error {
	defer s.Lister.CloseIdleConnections()
	return s.Poll.Run(ctx, out)
}
