package static

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Config lists services and their instances directly in the configuration
// file: for workloads no registry knows about, and to try the adapter.
type Config struct {
	Services []Service `yaml:"services"`
}

// Service is one statically defined service.
type Service struct {
	Name string `yaml:"name"`
	// Host defaults to "<name>.static".
	Host        string            `yaml:"host"`
	Ports       []Port            `yaml:"ports"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	Instances   []Instance        `yaml:"instances"`
}

// Port is a service port.
type Port struct {
	Number   uint32 `yaml:"number"`
	Protocol string `yaml:"protocol"`
}

// Instance is one endpoint of a static service.
type Instance struct {
	// ID defaults to the address.
	ID      string `yaml:"id"`
	Address string `yaml:"address"`
	// Ports maps a service port number to the port the instance listens on.
	Ports          map[uint32]uint32 `yaml:"ports"`
	Labels         map[string]string `yaml:"labels"`
	Locality       string            `yaml:"locality"`
	Network        string            `yaml:"network"`
	Weight         uint32            `yaml:"weight"`
	Identity       string            `yaml:"identity"`
	ServiceAccount string            `yaml:"serviceAccount"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	for i := range c.Services {
		s := &c.Services[i]
		if s.Host == "" && s.Name != "" {
			// The one host policy of every source; a name it cannot make a
			// host of is reported by Validate.
			s.Host = s.Name + ".static"
			if h, err := model.SanitizeHost(s.Host); err == nil {
				s.Host = h
			}
		}
		for j := range s.Instances {
			if s.Instances[j].ID == "" {
				s.Instances[j].ID = s.Instances[j].Address
			}
		}
	}
}

// Validate reports every invalid field, each with its path.
func (c *Config) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, s := range c.Services {
		p := fmt.Sprintf("services[%d]", i)
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", p))
		} else if names[s.Name] {
			errs = append(errs, fmt.Errorf("%s.name %q: defined twice", p, s.Name))
		}
		names[s.Name] = true
		// A host is what model.SanitizeHost makes of it, for every source:
		// written by hand it must already be in that form (lower case,
		// labels of [a-z0-9-]), so that what is served is what was written.
		if h, err := model.SanitizeHost(s.Host); err != nil {
			errs = append(errs, fmt.Errorf("%s.host %q: not a host name: %v", p, s.Host, err))
		} else if h != s.Host {
			errs = append(errs, fmt.Errorf("%s.host %q: not a host name as the adapter serves them (lower case, labels of a-z, 0-9 and '-'); write %q", p, s.Host, h))
		}
		if len(s.Ports) == 0 {
			errs = append(errs, fmt.Errorf("%s.ports: at least one port is required", p))
		}
		ports := map[uint32]bool{}
		for j, port := range s.Ports {
			pp := fmt.Sprintf("%s.ports[%d]", p, j)
			if port.Number == 0 || port.Number > 65535 {
				errs = append(errs, fmt.Errorf("%s.number %d: must be 1-65535", pp, port.Number))
			}
			if ports[port.Number] {
				errs = append(errs, fmt.Errorf("%s.number %d: defined twice", pp, port.Number))
			}
			ports[port.Number] = true
			if _, ok := model.ParseProtocol(port.Protocol); !ok && port.Protocol != "" {
				errs = append(errs, fmt.Errorf("%s.protocol %q: not an Istio protocol", pp, port.Protocol))
			}
		}
		ids := map[string]bool{}
		for j, inst := range s.Instances {
			ip := fmt.Sprintf("%s.instances[%d]", p, j)
			if inst.Address == "" {
				errs = append(errs, fmt.Errorf("%s.address: required", ip))
			} else if _, err := netip.ParseAddr(inst.Address); err != nil && strings.ContainsAny(inst.Address, " /:") {
				errs = append(errs, fmt.Errorf("%s.address %q: neither an IP address nor a host name", ip, inst.Address))
			}
			if ids[inst.ID] {
				errs = append(errs, fmt.Errorf("%s.id %q: defined twice", ip, inst.ID))
			}
			ids[inst.ID] = true
			for sp, target := range inst.Ports {
				if !ports[sp] {
					errs = append(errs, fmt.Errorf("%s.ports: %d is not a port of the service", ip, sp))
				}
				if target == 0 || target > 65535 {
					errs = append(errs, fmt.Errorf("%s.ports[%d] %d: must be 1-65535", ip, sp, target))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Key is the configuration key of static sources.
func (*Config) Key() string { return "static" }

// New makes the source (sources.Config); see the package's New.
func (c *Config) New(opts sources.Options) (sources.Source, error) {
	s, err := New(*c, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}
