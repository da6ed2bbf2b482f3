package kube

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config is the Kubernetes sink's part of the configuration file
// (`kubernetesSink:`). The namespace the objects go to is output.namespace,
// shared with the xDS sink, so that both write the same objects.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster service
	// account, which is how the chart runs it.
	Kubeconfig string `yaml:"kubeconfig"`
	// Owner is the value of the registry-adapter.io/owner label the sink puts
	// on every object it writes. It only writes, prunes and deletes objects
	// carrying app.kubernetes.io/managed-by=registry-adapter and this owner,
	// so that two adapters (or two releases) can share a namespace.
	Owner string `yaml:"owner"`
	// QPS and Burst are client-go's client-side token bucket: the most the
	// sink asks of the API server, whatever a registry does.
	QPS   float32 `yaml:"qps"`
	Burst int     `yaml:"burst"`
	// Workers is how many writes are in flight at once. Requests still pass
	// the QPS limit; workers only hide the round trip.
	Workers int `yaml:"workers"`
	// Resync is how often the leader lists its objects again and repairs
	// drift (an object deleted or edited by hand).
	Resync time.Duration `yaml:"resync"`
	// RequestTimeout bounds one API request.
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// MaxObjectBytes is the largest object the sink writes, as the JSON it
	// sends. A ServiceEntry with more endpoints than fit is written in parts
	// (split.go); etcd refuses objects over its --max-request-bytes, 1.5 MiB
	// by default, which must leave room for the API server's own metadata.
	MaxObjectBytes int `yaml:"maxObjectBytes"`
	// LeaderElection makes one replica write while the others wait.
	LeaderElection LeaderElectionConfig `yaml:"leaderElection"`
}

// LeaderElectionConfig is client-go's Lease-based leader election.
type LeaderElectionConfig struct {
	// Enabled defaults to true. Turn it off only with a single replica.
	Enabled *bool `yaml:"enabled"`
	// LeaseName is the Lease object (default registry-adapter).
	LeaseName string `yaml:"leaseName"`
	// LeaseNamespace defaults to output.namespace.
	LeaseNamespace string `yaml:"leaseNamespace"`
	// Identity defaults to the host name plus a random suffix.
	Identity      string        `yaml:"identity"`
	LeaseDuration time.Duration `yaml:"leaseDuration"`
	RenewDeadline time.Duration `yaml:"renewDeadline"`
	RetryPeriod   time.Duration `yaml:"retryPeriod"`
}

// On reports whether leader election is enabled.
func (c LeaderElectionConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Owner == "" {
		c.Owner = "registry-adapter"
	}
	if c.QPS == 0 {
		c.QPS = 20
	}
	if c.Burst == 0 {
		c.Burst = 40
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.Resync == 0 {
		c.Resync = 10 * time.Minute
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = DefaultMaxObjectBytes
	}
	le := &c.LeaderElection
	if le.LeaseName == "" {
		le.LeaseName = "registry-adapter"
	}
	// client-go's own defaults for controllers (kube-controller-manager).
	if le.LeaseDuration == 0 {
		le.LeaseDuration = 15 * time.Second
	}
	if le.RenewDeadline == 0 {
		le.RenewDeadline = 10 * time.Second
	}
	if le.RetryPeriod == 0 {
		le.RetryPeriod = 2 * time.Second
	}
}

var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// Validate reports every invalid field, each with its path under prefix.
func (c *Config) Validate(prefix string) error {
	var errs []error
	if !labelValueRE.MatchString(c.Owner) {
		errs = append(errs, fmt.Errorf("%s.owner %q: must be a Kubernetes label value", prefix, c.Owner))
	}
	if c.QPS < 0 {
		errs = append(errs, fmt.Errorf("%s.qps %v: must not be negative", prefix, c.QPS))
	}
	if c.Burst < 1 {
		errs = append(errs, fmt.Errorf("%s.burst %d: must be at least 1", prefix, c.Burst))
	}
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, fmt.Errorf("%s.workers %d: must be 1..64", prefix, c.Workers))
	}
	if c.Resync < 0 {
		errs = append(errs, fmt.Errorf("%s.resync %s: must not be negative", prefix, c.Resync))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("%s.requestTimeout %s: must not be negative", prefix, c.RequestTimeout))
	}
	// The API server refuses a request body over 3 MiB whatever etcd
	// allows; under 16 KiB a service's own fields may not leave room for
	// an endpoint.
	if c.MaxObjectBytes < 16<<10 || c.MaxObjectBytes > 3<<20 {
		errs = append(errs, fmt.Errorf("%s.maxObjectBytes %d: must be 16384..3145728 (etcd's default limit is 1572864, with room for the API server's metadata)", prefix, c.MaxObjectBytes))
	}
	le := c.LeaderElection
	if le.On() {
		// The order client-go itself insists on (NewLeaderElector).
		if le.LeaseDuration <= le.RenewDeadline {
			errs = append(errs, fmt.Errorf("%s.leaderElection: leaseDuration %s must be greater than renewDeadline %s",
				prefix, le.LeaseDuration, le.RenewDeadline))
		}
		if le.RenewDeadline <= le.RetryPeriod*12/10 {
			errs = append(errs, fmt.Errorf("%s.leaderElection: renewDeadline %s must be greater than 1.2 x retryPeriod %s",
				prefix, le.RenewDeadline, le.RetryPeriod))
		}
		if le.RetryPeriod < 1 {
			errs = append(errs, fmt.Errorf("%s.leaderElection.retryPeriod %s: must be positive", prefix, le.RetryPeriod))
		}
	}
	return errors.Join(errs...)
}
