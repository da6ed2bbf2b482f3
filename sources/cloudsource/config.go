package cloudsource

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// MappingConfig is the part of a cloud source's configuration that every
// cloud source has under the same keys: how its instances become services.
// A source embeds it with `yaml:",inline"`, so its keys sit beside the
// source's own; the source documents them, with its own defaults, template
// fields and address types.
type MappingConfig struct {
	// Ports are the ports of instances that declare none.
	Ports []Port `yaml:"ports"`
	// HostTemplate makes a service's host (text/template over .Service and
	// the source's own fields).
	HostTemplate string `yaml:"hostTemplate"`
	// AddressType is which address of an instance is served.
	AddressType string `yaml:"addressType"`
	// Network is the Istio network of every instance; empty: the source's
	// default.
	Network string `yaml:"network"`
}

// SetDefaults fills in hostTemplate and addressType when unset.
func (c *MappingConfig) SetDefaults(hostTemplate, addressType string) {
	if c.HostTemplate == "" {
		c.HostTemplate = hostTemplate
	}
	if c.AddressType == "" {
		c.AddressType = addressType
	}
}

// Validate checks the fields after SetDefaults, in the order ports,
// hostTemplate (executed once on hostSample), addressType (one of
// addressTypes) and network. Errors name the field.
func (c *MappingConfig) Validate(hostSample any, addressTypes ...string) error {
	_, errs := CheckPorts("ports", c.Ports)
	if _, err := sources.ParseHostTemplate("hostTemplate", c.HostTemplate, hostSample); err != nil {
		errs = append(errs, err)
	}
	if err := CheckAddressType(c.AddressType, addressTypes...); err != nil {
		errs = append(errs, fmt.Errorf("addressType: %v", err))
	}
	if c.Network != "" && strings.ContainsAny(c.Network, " \t\n") {
		errs = append(errs, fmt.Errorf("network: %q must not contain white space", c.Network))
	}
	return errors.Join(errs...)
}

// Warnings names the mapping settings that are valid but let registrants
// reach past the registry: a hostTemplate that lets whoever tags an
// instance choose whole hosts. hostSample is the source's template data,
// a struct with a Service field.
func (c *MappingConfig) Warnings(hostSample any) []string {
	t, err := sources.ParseHostTemplate("hostTemplate", c.HostTemplate, hostSample)
	if err != nil {
		return nil // Validate reports it
	}
	why := sources.HostTemplateRisk(func(service string) (string, error) {
		d := reflect.New(reflect.TypeOf(hostSample)).Elem()
		d.Set(reflect.ValueOf(hostSample))
		d.FieldByName("Service").SetString(service)
		return sources.RenderHost(t, d.Interface())
	})
	if why == "" {
		return nil
	}
	return []string{fmt.Sprintf("hostTemplate %q: %s", c.HostTemplate, why)}
}

// ConfigPorts returns the configured ports, sorted by number (valid after
// Validate).
func (c *MappingConfig) ConfigPorts() []model.Port {
	out, _ := CheckPorts("ports", c.Ports)
	return out
}

// Mapping is a cloud source's mapping of instances: the shared decisions
// and the hosts of its services.
type Mapping struct {
	Rules
	Hosts
}

// NewMapping returns the mapping of these settings (valid after Validate)
// under rules, the source's own keys and choices: their ports and address
// type are these settings'.
func (c *MappingConfig) NewMapping(hostSample any, rules Rules) (*Mapping, error) {
	h, err := NewHosts(c.HostTemplate, hostSample)
	if err != nil {
		return nil, err
	}
	rules.ConfigPorts, rules.AddressType = c.ConfigPorts(), c.AddressType
	return &Mapping{Rules: rules, Hosts: h}, nil
}

// CheckEndpoint checks an optional API endpoint override: empty, or an
// http(s) URL with a host. The error names the field.
func CheckEndpoint(field, v string) error {
	if v == "" {
		return nil
	}
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: %q is not an http(s) URL", field, v)
	}
	return nil
}

// FillIn sets each empty setting to its default: defaults maps a
// setting's field to its default value.
func FillIn(defaults map[*string]string) {
	for field, v := range defaults {
		if *field == "" {
			*field = v
		}
	}
}

// Checker gathers the errors of a configuration's Validate, in order.
type Checker struct{ errs []error }

// Bad adds an error about field: "<field>: <message>".
func (c *Checker) Bad(field, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// Add adds errs; a nil one is none.
func (c *Checker) Add(errs ...error) { c.errs = append(c.errs, errs...) }

// Err is every error added, joined; nil when there is none.
func (c *Checker) Err() error { return errors.Join(c.errs...) }

// Required checks a required setting: "required" when it is empty, else
// `"<v>" is not <what>` unless valid.
func (c *Checker) Required(field, v string, valid func(string) bool, what string) {
	switch {
	case v == "":
		c.Bad(field, "required")
	case !valid(v):
		c.Bad(field, "%q is not %s", v, what)
	}
}

// List checks each value of a list setting, naming it field[i]: `"<v>" is
// not <what>` unless valid, else `"<v>" listed twice` when an earlier one
// has the same key (key(v); key nil: v as it is).
func (c *Checker) List(field string, values []string, key func(string) string, valid func(string) bool, what string) {
	seen := make(map[string]bool, len(values))
	for i, v := range values {
		k := v
		if key != nil {
			k = key(v)
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		if !valid(v) {
			c.Bad(f, "%q is not %s", v, what)
		} else if seen[k] {
			c.Bad(f, "%q listed twice", v)
		}
		seen[k] = true
	}
}
