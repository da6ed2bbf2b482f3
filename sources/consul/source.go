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
	// epochs is the current run's (see epochs); set by Run.
	epochs atomic.Pointer[epochs]

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
	// warnings bounds the warnings about registry data (one answer can
	// hold any number of bad instances); the metrics count every one.
	warnings *sources.LogLimit

	// noBulk (tests) reads each service on its own from the start, as
	// without the bulk first read (bulk.go); afterBulk (tests) runs between
	// the bulk read and the start of the watches it seeds.
	noBulk    bool
	afterBulk func()
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
	mp, err := newMapper(&cfg, opts.Limits)
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
	rt := &roundTripper{base: tr, slots: sl, maxBody: cfg.MaxResponseBytes}
	if tr.TLSClientConfig != nil {
		rt.connecting = make(chan struct{}, 1)
	}
	ac.HttpClient = &http.Client{Transport: rt, CheckRedirect: refuseRedirect}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", tokens.redactErr(err))
	}
	if ac.TLSConfig.InsecureSkipVerify && tr.TLSClientConfig != nil {
		// From tls.insecureSkipVerify or CONSUL_HTTP_SSL_VERIFY=false. Said
		// once, at construction: restarts of the source reuse it.
		log.Warn("tls.insecureSkipVerify: Consul's certificate is not verified: anyone on the network path can "+
			"answer as Consul, read the ACL token and register anything in the mesh; set tls.caFile instead",
			zap.String("address", ac.Address))
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
		slots:    sl,
		warnings: sources.NewLogLimit(sources.LogBurst, sources.LogEvery),
	}
	// Until the first Run: requests made outside a run (tests) have an epoch.
	s.epochs.Store(newEpochs(context.Background()))
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
// It returns nil when ctx is done, or a panic recovered on one of its
// goroutines (a *sources.PanicError), after which the caller restarts it.
func (s *Source) Run(ctx context.Context, out chan<- []model.Group) error {
	ctx, cancel := context.WithCancel(ctx)
	// Each run has epochs of its own: the adapter restarts a source (a cap
	// breach, a recovered panic) by calling Run again, and the last run's
	// epochs are closed.
	ep := newEpochs(ctx)
	s.epochs.Store(ep)
	// A refusal the last run did not act on is not this run's.
	select {
	case <-s.refused:
	default:
	}
	var wg sync.WaitGroup
	var loggedIn string // the login's token; written by keepLoggedIn, read after wg.Wait
	l := &loop{
		s:           s,
		wg:          &wg,
		out:         out,
		events:      make(chan event),
		crashed:     make(chan error, 1),
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
	defer func() {
		cancel()
		wg.Wait()
		if s.cfg.Login != nil {
			s.logout(loggedIn) // no query uses the token any more
		}
		ep.close()
		// The watches of this run are gone: the next run counts its own.
		s.watched.Add(-int64(len(l.watches)))
		s.metrics.watches.Sub(float64(len(l.watches)))
		s.http.CloseIdleConnections()
	}()

	if s.cfg.Login != nil {
		tok, err := s.firstLogin(ctx)
		if err != nil {
			return nil // ctx ended
		}
		s.tokens.set(tok.SecretID)
		s.log.Info("logged in to Consul", zap.String("authMethod", s.cfg.Login.AuthMethod), zap.String("accessor", tok.AccessorID))
		loggedIn = tok.SecretID
		l.spawn("the Consul login", func() { loggedIn = s.keepLoggedIn(ctx, tok) })
	}
	if s.bulkUsable() {
		// The service list is held until the bulk read has answered (or
		// failed), so that the watches it starts are seeded from it.
		l.bulkPending = true
		l.spawn("the Consul bulk first read", func() { send(ctx, l.events, bulkEvent{res: s.bulkRead(ctx)}) })
	}
	l.spawn("the Consul catalog watch", func() { s.watchCatalog(ctx, l.events) })
	for _, kind := range s.cfg.ConfigEntries.kinds() {
		l.spawn(fmt.Sprintf("the Consul %s config entry watch", kind), func() { s.watchConfig(ctx, kind, l.events) })
	}
	for _, p := range s.cfg.Peers {
		l.spawn(fmt.Sprintf("the watch of Consul peer %q", p), func() { s.watchPeer(ctx, p, l.events) })
	}
	if s.tokens.file != "" {
		l.spawn("the ACL token file watch", func() { s.watchTokenFile(ctx) })
	}
	return l.run(ctx)
}

// warn logs a warning about registry data, within the source's budget
// (sources.LogLimit).
func (s *Source) warn(log *zap.Logger, msg string, fields ...zap.Field) {
	if ok, held := s.warnings.Allow(); ok {
		log.Warn(msg, append(fields, zap.Int(sources.HeldBackField, held))...)
	}
}

// epoch returns the current run's epochs.
func (s *Source) epoch() *epochs { return s.epochs.Load() }

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
			s.epoch().bump()
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
