package cloudmap

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/ec2/awsapi"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Config is the configuration of one AWS Cloud Map source: the instances of
// the services of one namespace, read with DiscoverInstances every
// refreshInterval, skipped for a service whose DiscoverInstancesRevision did
// not change. SetDefaults fills in the defaults documented in README.md.
type Config struct {
	poll.Config `yaml:",inline"`

	// Region is the AWS region of the namespace (required).
	Region string `yaml:"region"`
	// Endpoint overrides the Cloud Map endpoint (tests, VPC interface
	// endpoints). DiscoverInstances then goes to this host too, not to the
	// "data-" prefixed host.
	Endpoint string `yaml:"endpoint"`
	// Namespace is the namespace's name or HTTP name (required), e.g.
	// "prod.local".
	Namespace string `yaml:"namespace"`
	// Services are the service names to read; empty: every service of the
	// namespace (with ListNamespaces and ListServices each refresh).
	Services []string `yaml:"services"`
	// OwnerAccount is the account that owns a namespace shared with this
	// one through AWS RAM.
	OwnerAccount string `yaml:"ownerAccount"`
	// QueryParameters keeps only the instances with these attribute values
	// (DiscoverInstances' QueryParameters).
	QueryParameters map[string]string `yaml:"queryParameters"`
	// FullResync bounds how long an unchanged revision is trusted: a service
	// is read in full at least this often (default 10m).
	FullResync time.Duration `yaml:"fullResync"`

	// PortsAttribute is the instance attribute listing its ports, e.g.
	// "http:8080,grpc:9090".
	PortsAttribute string `yaml:"portsAttribute"`
	// Ports are the ports of instances without PortsAttribute. With one
	// port, an instance's AWS_INSTANCE_PORT is the port it listens on.
	Ports []Port `yaml:"ports"`
	// HostTemplate makes a service's host (text/template over .Service,
	// .Namespace and .Region).
	HostTemplate string `yaml:"hostTemplate"`
	// AddressType is the attribute served as the address: ipv4
	// (AWS_INSTANCE_IPV4), ipv6 (AWS_INSTANCE_IPV6) or cname
	// (AWS_INSTANCE_CNAME).
	AddressType string `yaml:"addressType"`
	// Network is the Istio network of every instance (default: none).
	Network string `yaml:"network"`
	// OptOutAttribute is an attribute that, present with any value but
	// "false", excludes an instance.
	OptOutAttribute string `yaml:"optOutAttribute"`

	// AssumeRoleARN is a role assumed (with STS AssumeRole) on top of the
	// default credential chain.
	AssumeRoleARN        string `yaml:"assumeRoleArn"`
	AssumeRoleExternalID string `yaml:"assumeRoleExternalId"`
	STSEndpoint          string `yaml:"stsEndpoint"`
}

// Port is a port declared in the configuration.
type Port struct {
	Number   uint32 `yaml:"number"`
	Protocol string `yaml:"protocol"`
}

// Defaults.
const (
	DefaultPortsAttribute  = "mesh-ports"
	DefaultOptOutAttribute = "mesh-exclude"
	DefaultHostTemplate    = "{{.Service}}.{{.Namespace}}"
	DefaultAddressType     = AddressIPv4
	DefaultFullResync      = 10 * time.Minute
)

// Address types.
const (
	AddressIPv4  = "ipv4"
	AddressIPv6  = "ipv6"
	AddressCNAME = "cname"
)

// SetDefaults fills in every unset field that has a default.
func (c *Config) SetDefaults() {
	c.Config.SetDefaults()
	if c.PortsAttribute == "" {
		c.PortsAttribute = DefaultPortsAttribute
	}
	if c.OptOutAttribute == "" {
		c.OptOutAttribute = DefaultOptOutAttribute
	}
	if c.HostTemplate == "" {
		c.HostTemplate = DefaultHostTemplate
	}
	if c.AddressType == "" {
		c.AddressType = DefaultAddressType
	}
	if c.FullResync == 0 {
		c.FullResync = DefaultFullResync
	}
}

var (
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	roleRE    = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
	// nameRE is a Cloud Map namespace or service name, loosely.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,253}$`)
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
	for _, e := range []struct{ field, v string }{{"endpoint", c.Endpoint}, {"stsEndpoint", c.STSEndpoint}} {
		if e.v == "" {
			continue
		}
		if u, err := url.Parse(e.v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(e.field, "%q is not an http(s) URL", e.v)
		}
	}
	switch {
	case c.Namespace == "":
		bad("namespace", "required")
	case !nameRE.MatchString(c.Namespace):
		bad("namespace", "%q is not a namespace name", c.Namespace)
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		f := fmt.Sprintf("services[%d]", i)
		if !nameRE.MatchString(s) {
			bad(f, "%q is not a service name", s)
		} else if seen[s] {
			bad(f, "%q listed twice", s)
		}
		seen[s] = true
	}
	if c.OwnerAccount != "" && !accountRE.MatchString(c.OwnerAccount) {
		bad("ownerAccount", "%q is not an AWS account ID (12 digits)", c.OwnerAccount)
	}
	for _, k := range slices.Sorted(maps.Keys(c.QueryParameters)) {
		if k == "" || c.QueryParameters[k] == "" {
			bad("queryParameters", "%q: %q: keys and values must not be empty", k, c.QueryParameters[k])
		}
	}
	if c.FullResync < c.RefreshInterval {
		bad("fullResync", "%s: must be at least refreshInterval (%s)", c.FullResync, c.RefreshInterval)
	}
	if c.PortsAttribute == c.OptOutAttribute || strings.HasPrefix(c.PortsAttribute, "AWS_") {
		bad("portsAttribute", "%q: must differ from optOutAttribute and not start with AWS_", c.PortsAttribute)
	}
	if strings.HasPrefix(c.OptOutAttribute, "AWS_") {
		bad("optOutAttribute", "%q: must not start with AWS_", c.OptOutAttribute)
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
	case AddressIPv4, AddressIPv6, AddressCNAME:
	default:
		bad("addressType", "%q: must be ipv4, ipv6 or cname", c.AddressType)
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

// configPorts converts the configured ports (valid after Validate).
func (c *Config) configPorts() []model.Port {
	nums, protos := make([]uint32, len(c.Ports)), make([]string, len(c.Ports))
	for i, p := range c.Ports {
		nums[i], protos[i] = p.Number, p.Protocol
	}
	out, _ := awsapi.CheckPorts("ports", nums, protos)
	return out
}
