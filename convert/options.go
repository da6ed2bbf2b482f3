package convert

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/vip"
)

// Mode chooses how instances are represented.
type Mode string

const (
	// ModeWorkloadEntry emits one WorkloadEntry per instance and a ServiceEntry
	// that selects them. An instance change then touches one small resource,
	// but istiod matches every WorkloadEntry of a namespace against every
	// ServiceEntry selector of it, which grows with the square of the
	// registry (BENCHMARKS.md, "istiod side by side").
	ModeWorkloadEntry Mode = "workloadentry"
	// ModeInline (the default) puts the endpoints inside the ServiceEntry:
	// fewer objects and no selector matching in istiod; an instance change
	// rewrites the whole ServiceEntry, and is still an endpoint-only (EDS)
	// push to proxies.
	ModeInline Mode = "inline"
)

// NamespaceLayout says how resources are spread over namespaces.
type NamespaceLayout string

const (
	// LayoutShared puts every resource in Options.Namespace.
	LayoutShared NamespaceLayout = "shared"
	// LayoutPerService puts each service's resources in a namespace of their
	// own, named by NamespaceFor.
	LayoutPerService NamespaceLayout = "perService"
)

// perServiceSuffixLen is the length of "-" and the hash NamespaceFor adds.
const perServiceSuffixLen = 1 + 10

// NamespaceFor is the namespace of host's resources: Namespace, or with the
// perService layout Namespace followed by a hash of the host, stable across
// restarts and replicas (e.g. registry-adapter-entries-3f9a1c2b7d).
func (o Options) NamespaceFor(host string) string {
	if o.NamespaceLayout != LayoutPerService {
		return o.Namespace
	}
	h := fnv.New64a()
	h.Write([]byte(host))
	return fmt.Sprintf("%s-%010x", o.Namespace, h.Sum64()&(1<<40-1))
}

// Options shape the generated resources.
type Options struct {
	// Namespace the resources are placed in. A ServiceEntry's workloadSelector
	// only selects WorkloadEntries in its own namespace, so both kinds share it.
	// istiod also lets a Kubernetes Service select the WorkloadEntries of its
	// namespace by label, so the default is a namespace of the adapter's own
	// that holds no Kubernetes Services (DefaultNamespace).
	Namespace string `yaml:"namespace"`
	Mode      Mode   `yaml:"mode"`
	// NamespaceLayout is shared (every resource in Namespace) or, in
	// workloadentry mode, perService: each service's ServiceEntry and
	// WorkloadEntries in a namespace of their own (NamespaceFor). istiod
	// matches a ServiceEntry's selector against every WorkloadEntry of its
	// namespace, so one shared namespace costs it O(N²) for N services and
	// perService O(N) (BENCHMARKS.md, "WorkloadEntry layouts").
	NamespaceLayout NamespaceLayout `yaml:"namespaceLayout"`
	// Location is MESH_INTERNAL (default) or MESH_EXTERNAL.
	Location string `yaml:"location"`
	// ExportTo limits the namespaces that see the services (default: all).
	ExportTo []string `yaml:"exportTo"`
	// CreateTime is stamped on every resource. istiod gives a host claimed
	// in two namespaces, and a TCP address:port two services share, to the
	// oldest; so it must be identical across restarts and replicas (a fixed
	// value, not the clock), and by default it is later than anything a
	// cluster creates (DefaultCreateTime).
	CreateTime time.Time `yaml:"createTime"`
	// SetServiceAccount copies an instance's configured service account into
	// WorkloadEntry.serviceAccount. Off by default: istiod then insists on
	// mutual TLS toward the workload, which only a workload with a sidecar can do.
	SetServiceAccount bool `yaml:"setServiceAccount"`
	// Labels narrows which registry labels reach the resources. Reserved keys
	// (istio, *istio.io/*, *kubernetes.io/*, *k8s.io/*) never do.
	Labels LabelOptions `yaml:"labels"`
	// Addresses chooses the ServiceEntry's spec.addresses (see AddressOptions).
	Addresses AddressOptions `yaml:"addresses"`
	// AllowLocalInstanceAddresses serves instances whose address is
	// loopback or link-local, which are left out otherwise: such an address
	// sends each client's traffic to the client's own host (its sidecar's
	// admin port, the node's metadata service at 169.254.169.254). Only for
	// a single host where clients and workloads share the loopback (tests,
	// demos). Unspecified and multicast addresses are never served.
	AllowLocalInstanceAddresses bool `yaml:"allowLocalInstanceAddresses"`
}

// allowsLocal reports whether an instance address of the kind
// model.LocalAddress names may be served.
func (o Options) allowsLocal(kind string) bool {
	return o.AllowLocalInstanceAddresses && (kind == "loopback" || kind == "link-local")
}

// AddressOptions: each service gets the addresses its registry gives it
// (model.Service.Addresses, or the Key label) when they are inside Allow and
// no other service claims them, or else one allocated from each range of
// Allocate, so that its name resolves in a sidecar's name table and each TCP
// port gets a listener of its own.
type AddressOptions struct {
	// Allocate lists the ranges addresses are allocated from, at most one
	// IPv4 and one IPv6 CIDR, or the single word "none" to allocate nothing.
	Allocate []string `yaml:"allocate"`
	// Key is a label key (e.g. "mesh-vip") whose value on the service or its
	// instances is the service's address. Every source's tags, meta and
	// labels become labels, so one key works for every source: a Consul
	// meta or tag, an EC2 or Azure tag, a GCE label, a Cloud Map attribute,
	// a static instance's label. It comes after the registry's own address
	// (Consul's consul-virtual) and before allocation, and is never copied
	// onto the resources. Instances that disagree are rejected for the
	// address alone.
	Key string `yaml:"key"`
	// Allow lists the ranges an address given by a registry must be inside
	// to be served, or the single word "none" to refuse every one. Whoever
	// registers a service writes its address, and in a sidecar an address
	// is a TCP listener: the default holds no address a cluster uses.
	// IstioRanges and the Allocate ranges are never allowed, nor loopback,
	// link-local, unspecified, multicast or broadcast addresses. A refused
	// address is reported once per host; the service is served with its
	// allocated addresses.
	Allow []string `yaml:"allow"`
	// IstioRanges are the ranges istiod allocates from itself: its
	// PILOT_IP_AUTOALLOCATE_IPV4_PREFIX and PILOT_IP_AUTOALLOCATE_IPV6_PREFIX
	// (configurable since Istio 1.28). Set them to istiod's values when
	// those are changed.
	IstioRanges []string `yaml:"istioRanges"`
}

// DefaultAllowRange is the reserved 240.0.0.0/4 (Class E): no cluster,
// cloud or host network uses it for Services or pods by default, Consul
// gives out its virtual addresses there (from 240.0.0.1 up), and Linux
// applications can connect to it, the sidecar capturing the traffic.
const DefaultAllowRange = "240.0.0.0/4"

// DefaultAllocateRange is in the reserved 240.0.0.0/4 like Istio's own
// 240.240.0.0/16, which it does not overlap, and far above the addresses
// Consul gives out (sequentially from 240.0.0.1). 2^26 addresses keep
// hash collisions, the only case where an address can move, rare.
const DefaultAllocateRange = "248.0.0.0/6"

// AllocateRanges returns the parsed ranges; none for "none".
func (o AddressOptions) AllocateRanges() ([]netip.Prefix, error) {
	return parseRanges("output.addresses.allocate", o.Allocate, true)
}

// Config returns the address allocator's configuration (package vip).
// Unset lists take their defaults.
func (o AddressOptions) Config() (vip.Config, error) {
	o.setDefaults()
	var cfg vip.Config
	var err error
	if cfg.Allocate, err = o.AllocateRanges(); err != nil {
		return cfg, err
	}
	if cfg.Allow, err = parseRanges("output.addresses.allow", o.Allow, true); err != nil {
		return cfg, err
	}
	if cfg.Istio, err = parseRanges("output.addresses.istioRanges", o.IstioRanges, false); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func parseRanges(key string, rs []string, noneOK bool) ([]netip.Prefix, error) {
	if noneOK && len(rs) == 1 && rs[0] == "none" {
		return nil, nil
	}
	var out []netip.Prefix
	for i, r := range rs {
		p, err := netip.ParsePrefix(r)
		if err != nil {
			hint := ""
			if noneOK {
				hint = ` (or use "none" alone)`
			}
			return nil, fmt.Errorf("%s[%d] %q: not a CIDR%s", key, i, r, hint)
		}
		out = append(out, p)
	}
	return out, nil
}

func (o *AddressOptions) setDefaults() {
	if len(o.Allocate) == 0 {
		o.Allocate = []string{DefaultAllocateRange}
	}
	if len(o.Allow) == 0 {
		o.Allow = []string{DefaultAllowRange}
	}
	if len(o.IstioRanges) == 0 {
		for _, r := range vip.DefaultIstioRanges {
			o.IstioRanges = append(o.IstioRanges, r.String())
		}
	}
}

// LabelOptions narrows the registry labels copied onto the resources.
type LabelOptions struct {
	// Allow lists the registry label keys that are copied; an entry ending
	// in "*" allows every key with that prefix. Empty: every key that is not
	// reserved.
	Allow []string `yaml:"allow"`
	// Prefix is put before every copied key, e.g. "consul.example.com/", so
	// that no selector written for Kubernetes labels matches a registry
	// label. Subsets then name the prefixed key.
	Prefix string `yaml:"prefix"`
}

// DefaultNamespace is the output namespace unless configured: one that holds
// no Kubernetes Services (istiod never needs it to exist in Kubernetes), so
// no Service can select a registry's WorkloadEntries by label.
const DefaultNamespace = "registry-adapter-entries"

// DefaultCreateTime is the creation time stamped on resources unless
// configured: far in the future, so that the cluster's own configuration (a
// Kubernetes Service, a hand-written ServiceEntry) is always older and keeps
// a shared host or TCP address:port in istiod (model.SortServicesByCreationTime:
// oldest first, then by name and namespace, which keeps the order among
// served entries, all stamped alike, deterministic). Measured with the real
// istiod (e2e TestClusterConfigWinsConflicts): stamped 2020-01-01, the old
// default, a registry entry took the kubernetes Service's 10.96.0.1:443.
var DefaultCreateTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// SetDefaults fills unset options.
func (o *Options) SetDefaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Mode == "" {
		o.Mode = ModeInline
	}
	if o.NamespaceLayout == "" {
		o.NamespaceLayout = LayoutShared
	}
	if o.Location == "" {
		o.Location = "MESH_INTERNAL"
	}
	o.Addresses.setDefaults()
	if o.CreateTime.IsZero() {
		o.CreateTime = DefaultCreateTime
	}
}

// Validate reports the first invalid option.
func (o *Options) Validate() error {
	if !validation.IsDNS1123Label(o.Namespace) {
		return fmt.Errorf("output.namespace %q: not a valid namespace name", o.Namespace)
	}
	switch o.Mode {
	case ModeWorkloadEntry, ModeInline:
	default:
		return fmt.Errorf("output.mode %q: must be %q or %q", o.Mode, ModeWorkloadEntry, ModeInline)
	}
	switch o.NamespaceLayout {
	case LayoutShared:
	case LayoutPerService:
		if o.Mode != ModeWorkloadEntry {
			return fmt.Errorf("output.namespaceLayout %q: only for mode %q (an inline ServiceEntry selects nothing)", o.NamespaceLayout, ModeWorkloadEntry)
		}
		if len(o.Namespace)+perServiceSuffixLen > 63 {
			return fmt.Errorf("output.namespaceLayout %q: output.namespace %q leaves no room for the %d characters of a service's suffix (at most %d characters)", o.NamespaceLayout, o.Namespace, perServiceSuffixLen, 63-perServiceSuffixLen)
		}
		if slices.Contains(o.ExportTo, ".") {
			return fmt.Errorf("output.namespaceLayout %q: exportTo \".\" would show each service only to its own namespace, where no workload runs", o.NamespaceLayout)
		}
	default:
		return fmt.Errorf("output.namespaceLayout %q: must be %q or %q", o.NamespaceLayout, LayoutShared, LayoutPerService)
	}
	switch o.Location {
	case "MESH_INTERNAL", "MESH_EXTERNAL":
	default:
		return fmt.Errorf("output.location %q: must be MESH_INTERNAL or MESH_EXTERNAL", o.Location)
	}
	// istiod's own rules (duplicates, "." next to the own namespace, "*" or
	// "~" mixed with others): breaking one would make it drop every
	// ServiceEntry silently, so it is a configuration error here.
	if err := validation.ExportTo(o.Namespace, o.ExportTo); err != nil {
		return fmt.Errorf("output.exportTo %q: %w", o.ExportTo, err)
	}
	if err := o.Labels.validate(); err != nil {
		return err
	}
	if k := o.Addresses.Key; k != "" && !IsLabelKey(k) {
		return fmt.Errorf("output.addresses.key %q: not a label key", k)
	}
	cfg, err := o.Addresses.Config()
	if err != nil {
		return err
	}
	if _, err := vip.New(cfg); err != nil {
		return fmt.Errorf("output.addresses: %w", err)
	}
	return nil
}

func (o LabelOptions) validate() error {
	for i, a := range o.Allow {
		key := strings.TrimSuffix(a, "*")
		if key == "" && a != "*" {
			return fmt.Errorf("output.labels.allow[%d]: empty key", i)
		}
		if strings.Contains(key, "*") {
			return fmt.Errorf("output.labels.allow[%d] %q: \"*\" may only end an entry", i, a)
		}
		if reservedKey(key) || key == "istio" {
			return fmt.Errorf("output.labels.allow[%d] %q: reserved for Istio and Kubernetes, never copied from a registry", i, a)
		}
	}
	if o.Prefix != "" {
		// The prefix must make a valid key with any valid name after it.
		if !IsLabelKey(o.Prefix+"x") || !IsLabelKey(o.Prefix+"x.y") {
			return fmt.Errorf("output.labels.prefix %q: with a label name after it, it must form a valid label key (e.g. \"consul.example.com/\")", o.Prefix)
		}
		if reservedKey(o.Prefix + "x") {
			return fmt.Errorf("output.labels.prefix %q: reserved for Istio and Kubernetes", o.Prefix)
		}
	}
	return nil
}
