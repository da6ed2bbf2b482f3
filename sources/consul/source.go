// Package consul is the Consul source: it watches Consul's catalog and the
// health of every service with blocking queries and maps each Consul service
// to a model.Service under a scope named after the service. See README.md for
// the mapping rules and the options.
package consul

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Source watches one Consul datacenter (and optionally its cluster peers).
type Source struct {
	cfg      Config
	name     string
	log      *zap.Logger
	reporter *sources.Reporter
	metrics  *metrics
	mapper   *mapper
	client   *api.Client
	http     *http.Client
	tokens   *tokenSource
	epochs   *epochs

	// sem caps the requests in flight.
	sem chan struct{}
	// watched is the number of health watches, for the fair-share wait.
	watched atomic.Int64
	// catalogFilter is the server-side filter of the catalog query; it is
	// dropped if the agent rejects it.
	catalogFilter atomic.Pointer[string]
}

var _ sources.Source = (*Source)(nil)

// New makes a Consul source. It does no I/O other than reading the token file.
func New(cfg Config, opts sources.Options) (*Source, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	rep := opts.Reporter
	if rep == nil {
		rep = sources.NewReporter(opts.Name, nil)
	}
	mp, err := newMapper(&cfg)
	if err != nil {
		return nil, err
	}
	tokens, err := newTokenSource(cfg.Token, cfg.TokenFile)
	if err != nil {
		return nil, err
	}

	// api.DefaultConfig reads CONSUL_HTTP_ADDR, CONSUL_HTTP_SSL(_VERIFY),
	// CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT/KEY and
	// CONSUL_TLS_SERVER_NAME; the configuration overrides them. Namespace,
	// partition, datacenter and token are set per request instead.
	ac := api.DefaultConfig()
	ac.Namespace, ac.Partition, ac.Datacenter = "", "", ""
	ac.Token, ac.TokenFile = "", ""
	if cfg.Address != "" {
		ac.Address = cfg.Address
	}
	t := cfg.TLS
	if t.CAFile != "" {
		ac.TLSConfig.CAFile = t.CAFile
	}
	if t.CAPath != "" {
		ac.TLSConfig.CAPath = t.CAPath
	}
	if t.CertFile != "" {
		ac.TLSConfig.CertFile, ac.TLSConfig.KeyFile = t.CertFile, t.KeyFile
	}
	if t.ServerName != "" {
		ac.TLSConfig.Address = t.ServerName
	}
	if t.InsecureSkipVerify {
		ac.TLSConfig.InsecureSkipVerify = true
	}
	// Every blocking query holds a connection: keep them all reusable.
	ac.Transport.MaxIdleConnsPerHost = cfg.MaxConcurrentQueries + 2
	ac.Transport.MaxIdleConns = cfg.MaxConcurrentQueries + 2
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", tokens.redactErr(err))
	}

	met := newMetrics(opts.Name)
	if err := opts.Register(met); err != nil {
		return nil, err
	}
	s := &Source{
		cfg:      cfg,
		name:     opts.Name,
		log:      log,
		reporter: rep,
		metrics:  met,
		mapper:   mp,
		client:   client,
		http:     ac.HttpClient,
		tokens:   tokens,
		epochs:   newEpochs(),
		sem:      make(chan struct{}, cfg.MaxConcurrentQueries),
	}
	f := catalogFilter(&cfg)
	s.catalogFilter.Store(&f)
	return s, nil
}

// Run watches Consul until ctx is done. The first batch sent on out is the
// complete state, sent once the catalog and every selected service have
// answered; later batches carry changed scopes only. Run never closes out.
func (s *Source) Run(ctx context.Context, out chan<- []model.Group) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer s.http.CloseIdleConnections()
	defer s.epochs.close()
	defer wg.Wait()
	defer cancel()

	l := &loop{
		s:         s,
		ctx:       ctx,
		wg:        &wg,
		out:       out,
		events:    make(chan any),
		start:     time.Now(),
		lists:     map[string]map[string]bool{},
		listed:    map[string]bool{},
		watches:   map[watchKey]*watch{},
		desired:   map[string]*model.Service{},
		published: map[string]model.Group{},
		pending:   map[string]model.Group{},
		claims:    map[string]map[string]bool{},
		failing:   map[string]bool{},
		filtered:  map[string]bool{},
		warned:    map[string]string{},
	}
	wg.Go(func() { s.watchCatalog(ctx, l.events) })
	for _, p := range s.cfg.Peers {
		wg.Go(func() { s.watchPeer(ctx, p, l.events) })
	}
	if s.tokens.file != "" {
		wg.Go(func() { s.watchTokenFile(ctx) })
	}
	l.run()
	return nil
}

// watchTokenFile re-reads the token file periodically; a change cancels the
// token epoch, which re-issues every query with the new token.
func (s *Source) watchTokenFile(ctx context.Context) {
	t := time.NewTicker(s.cfg.TokenFileCheckInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := s.tokens.refresh()
		if changed {
			s.epochs.bump()
		}
		switch {
		case err != nil:
			if !failing {
				s.log.Warn("cannot re-read the ACL token file; keeping the current token", zap.Error(err))
			}
			failing = true
		case changed:
			failing = false
			s.log.Info("ACL token file changed; re-issuing every Consul query with the new token",
				zap.String("tokenFile", s.tokens.file))
		default:
			failing = false
		}
	}
}
