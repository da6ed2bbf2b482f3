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
	http     *http.Transport
	tokens   *tokenSource
	epochs   *epochs

	// slots caps the requests in flight.
	slots *slots
	// refused (buffered 1, with a login only) tells the login that Consul
	// refused the token. It carries the refused token: queries in flight
	// with the old token are refused after the login replaced it, and must
	// not cause another login.
	refused chan string
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
	for _, w := range cfg.Warnings() {
		log.Warn("risky configuration: " + w)
	}
	rep := opts.Reporter
	if rep == nil {
		rep = sources.NewReporter(opts.Name, nil)
	}
	mp, err := newMapper(&cfg)
	if err != nil {
		return nil, err
	}
	tokens, err := newTokenSource(cfg.Token, cfg.TokenFile, cfg.Login == nil)
	if err != nil {
		return nil, err
	}

	// api.DefaultConfig reads CONSUL_HTTP_ADDR, CONSUL_HTTP_SSL(_VERIFY),
	// CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT/KEY and
	// CONSUL_TLS_SERVER_NAME; the configuration overrides them. Namespace,
	// partition, datacenter and token are set per request instead.
	ac := api.DefaultConfig()
	// CONSUL_NAMESPACE and CONSUL_PARTITION (read by api.DefaultConfig) stand
	// in for unset namespace and partition, as for Consul's own tools.
	if cfg.Namespace == "" {
		cfg.Namespace = ac.Namespace
	}
	if cfg.Partition == "" {
		cfg.Partition = ac.Partition
	}
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

	m := newMetrics(opts.Name)
	sl := newSlots(cfg.MaxConcurrentQueries, cfg.MaxStreams, len(cfg.ConfigEntries.kinds()), m)
	tr, err := newTransport(ac, sl, m, log)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", tokens.redactErr(err))
	}
	ac.HttpClient = &http.Client{Transport: &roundTripper{base: tr, slots: sl}}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", tokens.redactErr(err))
	}
	if cfg.plainHTTPToRemote(ac) && (tokens.get() != "" || tokens.file != "" || cfg.Login != nil) {
		log.Warn("the ACL token is sent to Consul over plain HTTP to a non-loopback address: anyone on the network path "+
			"can read it and act with its rights; use an https:// address", zap.String("address", ac.Address))
	}

	if err := opts.Register(m); err != nil {
		return nil, err
	}
	s := &Source{
		cfg:      cfg,
		name:     opts.Name,
		log:      log,
		reporter: rep,
		metrics:  m,
		mapper:   mp,
		client:   client,
		http:     tr,
		tokens:   tokens,
		epochs:   newEpochs(),
		slots:    sl,
	}
	if cfg.Login != nil {
		s.refused = make(chan string, 1)
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
	var loggedIn string // the login's token; written by keepLoggedIn, read after wg.Wait
	defer func() {
		cancel()
		wg.Wait()
		if s.cfg.Login != nil {
			s.logout(loggedIn) // no query uses the token any more
		}
		s.epochs.close()
		s.http.CloseIdleConnections()
	}()

	l := &loop{
		s:           s,
		wg:          &wg,
		out:         out,
		events:      make(chan event),
		nodeWatches: map[string]map[*watch]bool{},
		start:       time.Now(),
		lists:       map[string]map[string]bool{},
		listed:      map[string]bool{},
		watches:     map[watchKey]*watch{},
		desired:     map[string]*model.Service{},
		published:   map[string]model.Group{},
		pending:     map[string]model.Group{},
		claims:      map[string]map[string]bool{},
		failing:     map[string]bool{},
		filtered:    map[string]bool{},
		warned:      map[string]string{},
		mapped:      map[string]mapped{},
	}
	if kinds := s.cfg.ConfigEntries.kinds(); len(kinds) > 0 {
		l.config = newConfigState(kinds)
	}
	if s.cfg.Login != nil {
		tok, err := s.firstLogin(ctx)
		if err != nil {
			return nil // ctx ended
		}
		s.tokens.set(tok.SecretID)
		s.log.Info("logged in to Consul", zap.String("authMethod", s.cfg.Login.AuthMethod), zap.String("accessor", tok.AccessorID))
		loggedIn = tok.SecretID
		wg.Go(func() { loggedIn = s.keepLoggedIn(ctx, tok) })
	}
	wg.Go(func() { s.watchCatalog(ctx, l.events) })
	for _, kind := range s.cfg.ConfigEntries.kinds() {
		wg.Go(func() { s.watchConfig(ctx, kind, l.events) })
	}
	for _, p := range s.cfg.Peers {
		wg.Go(func() { s.watchPeer(ctx, p, l.events) })
	}
	if s.tokens.file != "" {
		wg.Go(func() { s.watchTokenFile(ctx) })
	}
	l.run(ctx)
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
