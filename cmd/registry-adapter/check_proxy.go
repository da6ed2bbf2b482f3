package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/fidelity"
)

// proxyCheck is the part of `check` that asks istiod, over xDS, what a
// sidecar (and optionally a ztunnel) receives.
type proxyCheck struct {
	xds       string
	namespace string
	consul    string
	ztunnel   bool
}

func (pc *proxyCheck) flags(fs *flag.FlagSet) {
	fs.StringVar(&pc.xds, "xds", "", "istiod's plaintext xDS address (--grpcAddr, port 15010): also check what a sidecar with DNS capture receives (CDS, EDS, LDS, NDS)")
	fs.StringVar(&pc.namespace, "proxy-namespace", "default", "namespace of the sidecar whose view --xds checks")
	fs.StringVar(&pc.consul, "consul", "", "with --xds: expect what this Consul agent's health API holds (host:port, CONSUL_HTTP_TOKEN honoured), read directly, instead of the adapter's own conversion of --config")
	fs.BoolVar(&pc.ztunnel, "ztunnel", false, "with --xds: also ask what a ztunnel (ambient) receives (delta xDS, istio.workload.Address) and report every host it lacks")
}

// run returns the differences between want (or Consul, read directly) and
// the sidecar's view, and says on stdout what it compared.
func (pc proxyCheck) run(ctx context.Context, stdout io.Writer, rendered fidelity.View) ([]string, error) {
	if pc.xds == "" {
		return nil, nil
	}
	want, against := rendered, "the adapter's conversion of the configured sources"
	if pc.consul != "" {
		cfg := consulapi.DefaultConfig()
		cfg.Address = pc.consul
		c, err := consulapi.NewClient(cfg)
		if err != nil {
			return nil, fmt.Errorf("consul client: %w", err)
		}
		if want, err = fidelity.Consul(ctx, c); err != nil {
			return nil, err
		}
		against = "Consul's health API at " + pc.consul + ", read directly"
	}
	p, err := fidelity.DialProxy(fidelity.ProxyConfig{Address: pc.xds, Namespace: pc.namespace})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := p.Wait(ctx); err != nil {
		return nil, err
	}
	view := p.View()
	diff := fidelity.DiffSidecar(want, view)
	fmt.Fprintf(stdout, "sidecar in namespace %s (istiod %s; %s) against %s (%s): %d differences\n",
		pc.namespace, pc.xds, view.Summary(), against, want.Summary(), len(diff))
	if pc.ztunnel {
		z, err := fidelity.Ztunnel(ctx, fidelity.ProxyConfig{Address: pc.xds})
		if err != nil {
			return nil, err
		}
		zd := fidelity.DiffZtunnel(want, z)
		fmt.Fprintf(stdout, "ztunnel (ambient): %d services, %d workloads; %d hosts missing\n", len(z.Services), len(z.Workloads), len(zd))
		diff = append(diff, zd...)
	}
	return diff, nil
}
