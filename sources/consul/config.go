package consul

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Config is the configuration of one Consul source. Every field is optional;
// SetDefaults fills in the defaults documented in README.md.
type Config struct {
	// Address of the Consul agent: "host:port", "http://host:port",
	// "https://host:port" or "unix:///path". Empty: CONSUL_HTTP_ADDR, else
	// 127.0.0.1:8500.
	Address string `yaml:"address"`
	// Datacenter to read; empty: the agent's own.
	Datacenter string `yaml:"datacenter"`
	// Namespace and Partition (Consul Enterprise only); empty: not sent.
	Namespace string `yaml:"namespace"`
	Partition string `yaml:"partition"`
	// Peers are cluster peerings whose imported services are also read.
	Peers []string `yaml:"peers"`

	// Token is the ACL token. TokenFile is a file holding it, re-read when it
	// changes. At most one of them; when neither is set, CONSUL_HTTP_TOKEN_FILE
	// and then CONSUL_HTTP_TOKEN are used.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"tokenFile"`
	// Login exchanges a JWT for a token with a Consul auth method, instead
	// of Token or TokenFile.
	Login *LoginConfig `yaml:"login"`
	// TokenFileCheckInterval is how often TokenFile is checked for changes.
	TokenFileCheckInterval time.Duration `yaml:"tokenFileCheckInterval"`
	// TLS to Consul; unset fields fall back to the CONSUL_CACERT-style
	// environment variables. Use an https:// address (or CONSUL_HTTP_SSL=true).
	TLS TLSConfig `yaml:"tls"`

	// Wait is the blocking-query wait (Consul caps it at 10m).
	Wait time.Duration `yaml:"wait"`
	// WaitJitter shortens each wait by a random fraction up to this value, so
	// that watches started together do not expire together.
	WaitJitter float64 `yaml:"waitJitter"`
	// Stale allows any Consul server to answer (?stale).
	Stale bool `yaml:"stale"`
	// Cached uses the agent's cache (?cached), which is backed by the
	// streaming backend when the agent has use_streaming_backend on.
	Cached bool `yaml:"cached"`
	// MaxConcurrentQueries caps the requests in flight to Consul (each
	// blocking query holds one connection; Consul allows 200 per client IP).
	MaxConcurrentQueries int `yaml:"maxConcurrentQueries"`
	// MaxStreams caps the requests in flight once Consul answers over HTTP/2
	// (its HTTPS listener): each is a stream, Consul serves 250 per
	// connection, so every watched service can have its own blocking query.
	// The default (DefaultMaxStreams) gives one to every service up to
	// 45,000; set it lower when several sources share one Consul client IP.
	MaxStreams int `yaml:"maxStreams"`
	// MinQueryInterval is the least time between two queries of one watch.
	MinQueryInterval time.Duration `yaml:"minQueryInterval"`
	// RequestTimeout bounds a non-blocking request, and is added to the wait
	// of a blocking one.
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// BackoffMin and BackoffMax bound the exponential backoff after errors.
	BackoffMin time.Duration `yaml:"backoffMin"`
	BackoffMax time.Duration `yaml:"backoffMax"`
	// PeerRefreshInterval is how often the list of services imported from
	// each peer is read (Consul cannot block on it).
	PeerRefreshInterval time.Duration `yaml:"peerRefreshInterval"`
	// MaxResponseBytes bounds each answer's body, after decompression: a
	// longer one fails its request (kind toolarge) rather than be read into
	// memory. Whoever answers at the address (or sits on a plain-HTTP path)
	// could otherwise send gigabytes.
	MaxResponseBytes int64 `yaml:"maxResponseBytes"`

	// Services are glob patterns (path.Match) of the service names to read;
	// empty: all. ExcludeServices are patterns of names to leave out.
	Services        []string `yaml:"services"`
	ExcludeServices []string `yaml:"excludeServices"`
	// RequiredTags: only instances with all these tags are read.
	RequiredTags []string `yaml:"requiredTags"`
	// IncludeWarning also serves instances whose worst check is warning.
	IncludeWarning bool `yaml:"includeWarning"`
	// IncludeKubernetesSynced also reads services that consul-k8s synced from
	// Kubernetes (meta external-source=kubernetes); istiod already knows them.
	IncludeKubernetesSynced bool `yaml:"includeKubernetesSynced"`

	// HostTemplate makes a service's host (text/template over .Service,
	// .Datacenter, .Namespace, .Partition, .Peer).
	HostTemplate string `yaml:"hostTemplate"`
	// PeerHostTemplate is the host template for services imported from peers.
	PeerHostTemplate string `yaml:"peerHostTemplate"`
	// TaggedAddresses are tagged address keys (lan, wan, lan_ipv4, wan_ipv6,
	// ...) preferred, in order, over the service and node address.
	TaggedAddresses []string `yaml:"taggedAddresses"`
	// VirtualAddressKey is a service meta key (or key=value tag key) whose
	// value is a virtual IP of the service (e.g. mesh-vip), used besides
	// Consul's own consul-virtual tagged address.
	VirtualAddressKey string `yaml:"virtualAddressKey"`
	// ProtocolMetaKey is the meta key (and tag key) naming the protocol.
	ProtocolMetaKey string `yaml:"protocolMetaKey"`
	// DefaultProtocol is the protocol of ports that declare none.
	DefaultProtocol string `yaml:"defaultProtocol"`
	// RegionMetaKey and ZoneMetaKey are node meta keys for the locality.
	RegionMetaKey string `yaml:"regionMetaKey"`
	ZoneMetaKey   string `yaml:"zoneMetaKey"`
	// Network is the Istio network of every instance; NetworkMetaKey, a node
	// meta key that overrides it per node.
	Network        string `yaml:"network"`
	NetworkMetaKey string `yaml:"networkMetaKey"`

	// ConfigEntries chooses which of Consul's config entries (its own
	// traffic configuration) the source reads.
	ConfigEntries ConfigEntriesConfig `yaml:"configEntries"`
}

// ConfigEntriesConfig chooses the config entries the source reads (README,
// "Config entries").
type ConfigEntriesConfig struct {
	// Protocol reads service-defaults and proxy-defaults for the protocol
	// of ports whose meta and tags name none. Default on.
	Protocol *bool `yaml:"protocol"`
	// TrafficPolicy reads service-resolver, service-splitter and
	// service-router and states them as each service's traffic policy,
	// which the adapter serves as DestinationRules and VirtualServices.
	// Default off: Istio does not merge two VirtualServices for one host,
	// and a mesh may already have its own.
	TrafficPolicy bool `yaml:"trafficPolicy"`
}

// readsProtocol reports whether service-defaults and proxy-defaults are read.
func (c ConfigEntriesConfig) readsProtocol() bool { return c.Protocol == nil || *c.Protocol }

// kinds lists the config entry kinds the source watches.
func (c ConfigEntriesConfig) kinds() []string {
	var out []string
	if c.readsProtocol() {
		out = append(out, kindServiceDefaults, kindProxyDefaults)
	}
	if c.TrafficPolicy {
		out = append(out, kindResolver, kindSplitter, kindRouter)
	}
	return out
}

// TLSConfig is TLS toward Consul.
type TLSConfig struct {
	CAFile             string `yaml:"caFile"`
	CAPath             string `yaml:"caPath"`
	CertFile           string `yaml:"certFile"`
	KeyFile            string `yaml:"keyFile"`
	ServerName         string `yaml:"serverName"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
}

// Defaults.
const (
	DefaultHostTemplate     = "{{.Service}}.service.consul"
	DefaultPeerHostTemplate = "{{.Service}}.service.{{.Peer}}.peer.consul"
	DefaultWait             = 5 * time.Minute
	// DefaultMaxStreams lets every watched service have its own stream up
	// to 45,000 services: streams are opened as watches need them (one per
	// service, plus the feeds', config entry watches' and reads'), so the
	// connections follow the service count, 250 streams each (Go's HTTP/2
	// server default, which Consul keeps), up to 180 of Consul's
	// limits.http_max_conns_per_client (200 by default; the rest is left to
	// other clients at the same address). Past it, watches take turns.
	DefaultMaxStreams = 45000
	// DefaultMaxResponseBytes bounds one answer (see README.md, Limits, for
	// what Consul's answers weigh at 30,000 services).
	DefaultMaxResponseBytes = 128 << 20
	maxWait                 = 10 * time.Minute
)

// SetDefaults fills in every unset field that has a default.
func (c *Config) SetDefaults() {
	setDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDur(&c.Wait, DefaultWait)
	setDur(&c.MinQueryInterval, time.Second)
	setDur(&c.RequestTimeout, 30*time.Second)
	setDur(&c.BackoffMin, time.Second)
	setDur(&c.BackoffMax, time.Minute)
	setDur(&c.PeerRefreshInterval, 30*time.Second)
	setDur(&c.TokenFileCheckInterval, 5*time.Second)
	if c.Login != nil {
		lc := *c.Login // the caller's configuration stays as written
		if lc.BearerTokenFile == "" {
			lc.BearerTokenFile = DefaultBearerTokenFile
		}
		c.Login = &lc
	}
	if c.WaitJitter == 0 {
		c.WaitJitter = 0.1
	}
	if c.MaxConcurrentQueries == 0 {
		c.MaxConcurrentQueries = 100
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.HostTemplate == "" {
		c.HostTemplate = DefaultHostTemplate
	}
	if c.PeerHostTemplate == "" {
		c.PeerHostTemplate = DefaultPeerHostTemplate
	}
	if c.ProtocolMetaKey == "" {
		c.ProtocolMetaKey = "protocol"
	}
	if c.DefaultProtocol == "" {
		c.DefaultProtocol = "tcp"
	}
}

// Validate checks a configuration after SetDefaults. Errors name the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Address != "" {
		if scheme, _, ok := strings.Cut(c.Address, "://"); ok && scheme != "http" && scheme != "https" && scheme != "unix" {
			bad("address", "unknown scheme %q (want http, https or unix)", scheme)
		}
		if strings.HasPrefix(c.Address, "http://") && (c.TLS != TLSConfig{}) {
			bad("tls", "set, but address %q is plain http (use https://)", c.Address)
		}
	}
	if c.Token != "" && c.TokenFile != "" {
		bad("token", "set together with tokenFile; use one")
	}
	if c.Login != nil {
		if c.Token != "" || c.TokenFile != "" {
			bad("login", "set together with token or tokenFile; use one")
		}
		if c.Login.AuthMethod == "" {
			bad("login.authMethod", "must be set")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls.certFile", "certFile and keyFile go together")
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if p == "" || seen[p] {
			bad("peers", "empty or duplicate peer %q", p)
		}
		seen[p] = true
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			bad(field, "must be positive, got %s", d)
		}
	}
	if c.Wait < time.Second || c.Wait > maxWait {
		bad("wait", "must be between 1s and %s, got %s", maxWait, c.Wait)
	}
	if c.WaitJitter < 0 || c.WaitJitter > 0.5 {
		bad("waitJitter", "must be between 0 and 0.5, got %g", c.WaitJitter)
	}
	if c.MaxConcurrentQueries < 1 {
		bad("maxConcurrentQueries", "must be at least 1, got %d", c.MaxConcurrentQueries)
	}
	if c.MaxStreams < 1 {
		bad("maxStreams", "must be at least 1, got %d", c.MaxStreams)
	}
	if c.MaxResponseBytes < 1<<20 {
		bad("maxResponseBytes", "must be at least 1 MiB (1048576), got %d", c.MaxResponseBytes)
	}
	if c.MinQueryInterval < 0 {
		bad("minQueryInterval", "must not be negative, got %s", c.MinQueryInterval)
	}
	positive("requestTimeout", c.RequestTimeout)
	positive("backoffMin", c.BackoffMin)
	positive("backoffMax", c.BackoffMax)
	positive("peerRefreshInterval", c.PeerRefreshInterval)
	positive("tokenFileCheckInterval", c.TokenFileCheckInterval)
	if c.BackoffMax < c.BackoffMin {
		bad("backoffMax", "%s is less than backoffMin %s", c.BackoffMax, c.BackoffMin)
	}
	for _, f := range []struct {
		field string
		pats  []string
	}{{"services", c.Services}, {"excludeServices", c.ExcludeServices}} {
		for _, p := range f.pats {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				bad(f.field, "invalid pattern %q", p)
			}
		}
	}
	for _, t := range c.RequiredTags {
		if t == "" {
			bad("requiredTags", "empty tag")
		}
	}
	for _, t := range c.TaggedAddresses {
		if t == "" {
			bad("taggedAddresses", "empty key")
		}
	}
	if _, err := parseHostTemplate("hostTemplate", c.HostTemplate); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseHostTemplate("peerHostTemplate", c.PeerHostTemplate); err != nil {
		errs = append(errs, err)
	}
	if _, ok := model.ParseProtocol(c.DefaultProtocol); !ok {
		bad("defaultProtocol", "unknown protocol %q", c.DefaultProtocol)
	}
	if c.ProtocolMetaKey == "" {
		bad("protocolMetaKey", "must not be empty")
	}
	return errors.Join(errs...)
}

// selected reports whether the service name passes the include and exclude
// patterns (Consul's own "consul" service never does).
func (c *Config) selected(name string) bool {
	if name == "consul" {
		return false
	}
	for _, p := range c.ExcludeServices {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	if len(c.Services) == 0 {
		return true
	}
	for _, p := range c.Services {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Key is the configuration key of Consul sources.
func (*Config) Key() string { return "consul" }

// New makes the source (sources.Config); see the package's New.
// Warnings names the settings that are valid but let registrants reach past
// the registry: a host template that lets them choose whole hosts.
func (c *Config) Warnings() []string {
	var out []string
	for _, t := range []struct{ key, text string }{{"hostTemplate", c.HostTemplate}, {"peerHostTemplate", c.PeerHostTemplate}} {
		tmpl, err := parseHostTemplate(t.key, t.text)
		if err != nil {
			continue // Validate reports it
		}
		why := sources.HostTemplateRisk(func(service string) (string, error) {
			return renderHost(tmpl, hostData{Service: service, Datacenter: "dc1", Namespace: "default", Partition: "default", Peer: "peer"})
		})
		if why != "" {
			out = append(out, fmt.Sprintf("%s %q: %s", t.key, t.text, why))
		}
	}
	return out
}

func (c *Config) New(opts sources.Options) (sources.Source, error) {
	s, err := New(*c, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}
