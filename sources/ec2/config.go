package ec2

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Config is the configuration of one EC2 source: the running instances of
// one region, listed with DescribeInstances every refreshInterval.
// SetDefaults fills in the defaults documented in README.md.
type Config struct {
	poll.Config `yaml:",inline"`

	// Region is the AWS region whose instances are listed (required).
	Region string `yaml:"region"`
	// Endpoint overrides the EC2 API endpoint (tests, VPC interface
	// endpoints), e.g. "http://127.0.0.1:5000".
	Endpoint string `yaml:"endpoint"`
	// Filters are EC2 DescribeInstances filters, name -> values, sent with
	// every request (e.g. "vpc-id": [vpc-0abc], "tag:env": [prod]).
	Filters map[string][]string `yaml:"filters"`
	// Tags keeps only instances whose tag key has one of the values; it is
	// shorthand for the filter "tag:<key>".
	Tags map[string][]string `yaml:"tags"`
	// PageSize is DescribeInstances' MaxResults (5-1000, default 1000).
	PageSize int32 `yaml:"pageSize"`

	// ServiceTag is the tag naming the services an instance belongs to:
	// one or more names separated by commas or spaces.
	ServiceTag string `yaml:"serviceTag"`
	// PortsTag is the tag listing an instance's ports, e.g.
	// "http:8080,grpc:9090".
	PortsTag string `yaml:"portsTag"`
	// MappingConfig holds ports (those of instances that have no
	// PortsTag), hostTemplate (a service's host, text/template over
	// .Service and .Region), addressType (the address that is served:
	// private, the primary private IPv4 address; public, the public IPv4
	// address; or ipv6, the primary IPv6 address) and network (the Istio
	// network of every instance; empty: its VPC ID).
	cloudsource.MappingConfig `yaml:",inline"`
	// OptOutTag is a tag that, present with any value but "false", excludes
	// an instance.
	OptOutTag string `yaml:"optOutTag"`
	// Health, when enabled, serves an instance only while its EC2 status
	// checks (DescribeInstanceStatus) are not impaired or initializing, and
	// the ELBv2 target groups named in it do not report it unhealthy.
	Health HealthConfig `yaml:"health"`

	// Role is the role assumed (with STS AssumeRole) on top of the default
	// credential chain, e.g. for another account: assumeRoleArn,
	// assumeRoleExternalId and stsEndpoint.
	awsapi.Role `yaml:",inline"`
}

// HealthConfig is the opt-in to EC2 health: the status checks, and
// optionally the health of the instance in ELBv2 target groups.
type HealthConfig struct {
	cloudsource.HealthConfig `yaml:",inline"`
	// TargetGroups are ELBv2 target group ARNs (instance targets) whose
	// health counts too, read with DescribeTargetHealth.
	TargetGroups []string `yaml:"targetGroups"`
	// ELBv2Endpoint overrides the ELBv2 API endpoint (tests, VPC interface
	// endpoints), as endpoint does for EC2.
	ELBv2Endpoint string `yaml:"elbv2Endpoint"`
}

// targetGroupARNRE is an ELBv2 target group ARN.
var targetGroupARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$`)

// Port is a port declared in the configuration.
type Port = cloudsource.Port

// Defaults.
const (
	DefaultServiceTag   = "mesh-service"
	DefaultPortsTag     = "mesh-ports"
	DefaultOptOutTag    = "mesh-exclude"
	DefaultHostTemplate = "{{.Service}}.{{.Region}}.ec2"
	DefaultAddressType  = cloudsource.AddressPrivate
	DefaultPageSize     = 1000
)

// SetDefaults fills in every unset field that has a default.
func (c *Config) SetDefaults() {
	c.Config.SetDefaults()
	cloudsource.FillIn(map[*string]string{&c.ServiceTag: DefaultServiceTag, &c.PortsTag: DefaultPortsTag, &c.OptOutTag: DefaultOptOutTag})
	c.MappingConfig.SetDefaults(DefaultHostTemplate, DefaultAddressType)
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
}

// filterNameRE is loose: EC2 filter names are lowercase words with '-' and
// '.', or "tag:<any tag key>".
var filterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// Warnings names the settings that are valid but risky (sources.Warner).
func (c *Config) Warnings() []string { return c.MappingConfig.Warnings(hostSample) }

// Validate checks a configuration after SetDefaults. Errors name the field.
func (c *Config) Validate() error {
	var v cloudsource.Checker
	bad := v.Bad
	v.Add(c.Config.Validate())
	v.Add(awsapi.CheckRegion(c.Region),
		cloudsource.CheckEndpoint("endpoint", c.Endpoint), cloudsource.CheckEndpoint("stsEndpoint", c.STSEndpoint))
	for _, name := range sortedKeys(c.Filters) {
		f := fmt.Sprintf("filters[%s]", name)
		switch {
		case strings.HasPrefix(name, "tag:"):
			if len(name) == len("tag:") {
				bad(f, "a tag filter needs a key (tag:<key>)")
			}
		case !filterNameRE.MatchString(name):
			bad(f, "%q is not an EC2 filter name (e.g. vpc-id, tag:env)", name)
		}
		checkValues(f, c.Filters[name], bad)
	}
	for _, key := range sortedKeys(c.Tags) {
		f := fmt.Sprintf("tags[%s]", key)
		if strings.TrimSpace(key) == "" {
			bad(f, "empty tag key")
		}
		if _, dup := c.Filters["tag:"+key]; dup {
			bad(f, "also set as filters[tag:%s]", key)
		}
		checkValues(f, c.Tags[key], bad)
	}
	if c.PageSize < 5 || c.PageSize > 1000 {
		bad("pageSize", "%d: must be 5-1000", c.PageSize)
	}
	for _, t := range []struct{ field, key string }{
		{"serviceTag", c.ServiceTag}, {"portsTag", c.PortsTag}, {"optOutTag", c.OptOutTag},
	} {
		if err := checkTagKey(t.key); err != nil {
			bad(t.field, "%q: %v", t.key, err)
		}
	}
	if c.ServiceTag == c.PortsTag || c.ServiceTag == c.OptOutTag || c.PortsTag == c.OptOutTag {
		bad("serviceTag", "serviceTag %q, portsTag %q and optOutTag %q must differ", c.ServiceTag, c.PortsTag, c.OptOutTag)
	}
	if len(c.Health.TargetGroups) > 0 && !c.Health.Enabled {
		bad("health.targetGroups", "set without health.enabled")
	}
	v.List("health.targetGroups", c.Health.TargetGroups, nil, targetGroupARNRE.MatchString,
		"a target group ARN (arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>)")
	v.Add(cloudsource.CheckEndpoint("health.elbv2Endpoint", c.Health.ELBv2Endpoint))
	v.Add(c.MappingConfig.Validate(hostSample, cloudsource.VMAddressTypes...), c.Role.Validate())
	return v.Err()
}

func checkValues(field string, values []string, bad func(string, string, ...any)) {
	if len(values) == 0 {
		bad(field, "at least one value is required")
	}
	for i, v := range values {
		if v == "" {
			bad(fmt.Sprintf("%s[%d]", field, i), "empty value")
		}
	}
}

// checkTagKey checks an EC2 tag key: 1-128 characters, not aws:-prefixed.
func checkTagKey(k string) error {
	switch {
	case k == "" || len(k) > 128:
		return errors.New("a tag key has 1-128 characters")
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return errors.New("the aws: prefix is reserved")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Key is the configuration key of EC2 sources.
func (*Config) Key() string { return "ec2" }

// New makes the source (sources.Config); see the package's New.
func (c *Config) New(opts sources.Options) (sources.Source, error) {
	return cloudsource.AsSource(New(*c, opts))
}
