package ec2

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/ec2/awsapi"
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
	// Ports are the ports of instances that have no PortsTag.
	Ports []Port `yaml:"ports"`
	// HostTemplate makes a service's host (text/template over .Service and
	// .Region).
	HostTemplate string `yaml:"hostTemplate"`
	// AddressType is the address that is served: private (the primary
	// private IPv4 address), public (the public IPv4 address) or ipv6 (the
	// primary IPv6 address).
	AddressType string `yaml:"addressType"`
	// Network is the Istio network of every instance; empty: its VPC ID.
	Network string `yaml:"network"`
	// OptOutTag is a tag that, present with any value but "false", excludes
	// an instance.
	OptOutTag string `yaml:"optOutTag"`

	// AssumeRoleARN is a role assumed (with STS AssumeRole) on top of the
	// default credential chain, e.g. for another account.
	AssumeRoleARN string `yaml:"assumeRoleArn"`
	// AssumeRoleExternalID is the external ID the role's trust policy
	// requires, if any.
	AssumeRoleExternalID string `yaml:"assumeRoleExternalId"`
	// STSEndpoint overrides the STS endpoint used to assume the role.
	STSEndpoint string `yaml:"stsEndpoint"`
}

// Port is a port declared in the configuration.
type Port struct {
	Number   uint32 `yaml:"number"`
	Protocol string `yaml:"protocol"`
}

// Defaults.
const (
	DefaultServiceTag   = "mesh-service"
	DefaultPortsTag     = "mesh-ports"
	DefaultOptOutTag    = "mesh-exclude"
	DefaultHostTemplate = "{{.Service}}.{{.Region}}.ec2"
	DefaultAddressType  = AddressPrivate
	DefaultPageSize     = 1000
)

// Address types.
const (
	AddressPrivate = "private"
	AddressPublic  = "public"
	AddressIPv6    = "ipv6"
)

// SetDefaults fills in every unset field that has a default.
func (c *Config) SetDefaults() {
	c.Config.SetDefaults()
	if c.ServiceTag == "" {
		c.ServiceTag = DefaultServiceTag
	}
	if c.PortsTag == "" {
		c.PortsTag = DefaultPortsTag
	}
	if c.OptOutTag == "" {
		c.OptOutTag = DefaultOptOutTag
	}
	if c.HostTemplate == "" {
		c.HostTemplate = DefaultHostTemplate
	}
	if c.AddressType == "" {
		c.AddressType = DefaultAddressType
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
}

var (
	// regionRE is an AWS region name: us-east-1, eu-central-2,
	// us-gov-west-1, cn-north-1, ap-southeast-5...
	regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	roleRE   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	// filterNameRE is loose: EC2 filter names are lowercase words with '-'
	// and '.', or "tag:<any tag key>".
	filterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)
)

// Validate checks a configuration after SetDefaults. Errors name the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.Region == "":
		bad("region", "required")
	case !regionRE.MatchString(c.Region):
		bad("region", "%q is not an AWS region name (e.g. us-east-1)", c.Region)
	}
	checkURL := func(field, v string) {
		if v == "" {
			return
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(field, "%q is not an http(s) URL", v)
		}
	}
	checkURL("endpoint", c.Endpoint)
	checkURL("stsEndpoint", c.STSEndpoint)
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
	nums, protos := make([]uint32, len(c.Ports)), make([]string, len(c.Ports))
	for i, p := range c.Ports {
		nums[i], protos[i] = p.Number, p.Protocol
	}
	_, perrs := awsapi.CheckPorts("ports", nums, protos)
	errs = append(errs, perrs...)
	if _, err := parseHostTemplate(c.HostTemplate); err != nil {
		bad("hostTemplate", "%v", err)
	}
	switch c.AddressType {
	case AddressPrivate, AddressPublic, AddressIPv6:
	default:
		bad("addressType", "%q: must be private, public or ipv6", c.AddressType)
	}
	if c.Network != "" && strings.ContainsAny(c.Network, " \t\n") {
		bad("network", "%q must not contain white space", c.Network)
	}
	if c.AssumeRoleARN != "" && !roleRE.MatchString(c.AssumeRoleARN) {
		bad("assumeRoleArn", "%q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", c.AssumeRoleARN)
	}
	if c.AssumeRoleARN == "" && c.AssumeRoleExternalID != "" {
		bad("assumeRoleExternalId", "set without assumeRoleArn")
	}
	if c.AssumeRoleARN == "" && c.STSEndpoint != "" {
		bad("stsEndpoint", "set without assumeRoleArn")
	}
	return errors.Join(errs...)
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

// configPorts converts the configured ports (valid after Validate).
func (c *Config) configPorts() []model.Port {
	nums, protos := make([]uint32, len(c.Ports)), make([]string, len(c.Ports))
	for i, p := range c.Ports {
		nums[i], protos[i] = p.Number, p.Protocol
	}
	out, _ := awsapi.CheckPorts("ports", nums, protos)
	return out
}
