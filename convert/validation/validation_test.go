package validation

import (
	"errors"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

// vtPort builds a service port.
func vtPort(num uint32, proto, name string) *networking.ServicePort {
	return &networking.ServicePort{Number: num, Protocol: proto, Name: name}
}

// vtSE builds a ServiceEntry; tests then tweak the fields they exercise.
func vtSE(res networking.ServiceEntry_Resolution, hosts []string, ports ...*networking.ServicePort) *networking.ServiceEntry {
	return &networking.ServiceEntry{Hosts: hosts, Ports: ports, Resolution: res, Location: networking.ServiceEntry_MESH_EXTERNAL}
}

func vtWith(se *networking.ServiceEntry, f func(*networking.ServiceEntry)) *networking.ServiceEntry {
	f(se)
	return se
}

func vtCheck(t *testing.T, err error, want, notWant []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("want no error, got: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want error containing %q, got nil", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	for _, nw := range notWant {
		if strings.Contains(err.Error(), nw) {
			t.Errorf("error unexpectedly contains %q:\n%v", nw, err)
		}
	}
}

func TestValidateServiceEntry(t *testing.T) {
	const (
		DNS    = networking.ServiceEntry_DNS
		RR     = networking.ServiceEntry_DNS_ROUND_ROBIN
		STATIC = networking.ServiceEntry_STATIC
		NONE   = networking.ServiceEntry_NONE
		DYN    = networking.ServiceEntry_DYNAMIC_DNS
	)
	host := []string{"api.example.com"}
	https := vtPort(443, "TLS", "tls")
	http := vtPort(80, "HTTP", "http")
	tcp := vtPort(5432, "TCP", "tcp")
	ep := func(addr string, ports map[string]uint32) *networking.WorkloadEntry {
		return &networking.WorkloadEntry{Address: addr, Ports: ports}
	}
	long := func(n int) string { return strings.Repeat("a", n) }

	tests := []struct {
		name    string
		meta    *Meta // default: name "se", namespace "default"
		se      *networking.ServiceEntry
		want    []string // substrings; empty means valid
		notWant []string
	}{
		// ---- valid ----
		{name: "valid DNS", se: vtSE(DNS, host, https)},
		{name: "valid STATIC with endpoints", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Addresses = []string{"240.0.0.1", "2001:db8::1"}
			s.Endpoints = []*networking.WorkloadEntry{ep("10.0.0.1", map[string]uint32{"http": 8080}), ep("fd00::1", nil)}
		})},
		{name: "valid NONE with CIDR", se: vtWith(vtSE(NONE, host, tcp), func(s *networking.ServiceEntry) {
			s.Addresses = []string{"10.0.0.0/8"}
		})},
		{name: "valid DNS_ROUND_ROBIN with one FQDN endpoint", se: vtWith(vtSE(RR, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("backend.example.com", map[string]uint32{"http": 8080})}
		})},
		{name: "valid workloadSelector", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"app": "web"}}
		})},
		{name: "partial wildcard is only a warning", se: vtSE(NONE, []string{"*foo.example.com"}, https)},
		{name: "TCP port without addresses is only a warning", se: vtSE(DNS, host, tcp)},
		{name: "short host name is accepted", se: vtSE(DNS, []string{"db"}, tcp)},
		{name: "trailing dot host is accepted", se: vtSE(DNS, []string{"api.example.com."}, tcp)},
		{name: "upper case port name is a DNS-1123 label for Istio", se: vtSE(DNS, host, vtPort(80, "http", "HTTP"))},
		{name: "empty protocol is allowed (sniffing)", se: vtSE(DNS, host, vtPort(80, "", "web"))},
		{name: "label value longer than 63 is accepted by Istio", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Address: "10.0.0.1", Labels: map[string]string{"k": long(100)}}}
		})},
		{name: "selector without labels is only a warning", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.WorkloadSelector = &networking.WorkloadSelector{}
		})},

		// ---- hosts ----
		{name: "no hosts", se: vtSE(NONE, nil, http), want: []string{"hosts: service entry must have at least one host"}},
		{name: "full wildcard host", se: vtSE(NONE, []string{"*"}, http), want: []string{`hosts[0] "*": the full wildcard host is not allowed`}},
		{name: "IP address as host", se: vtSE(NONE, []string{"10.0.0.1"}, http), want: []string{`hosts[0] "10.0.0.1"`, "cannot be all-numeric"}},
		{name: "wildcard not in first label", se: vtSE(NONE, []string{"foo.*.com"}, http), want: []string{`hosts[0] "foo.*.com"`, `label "*" invalid`}},
		{name: "host too long", se: vtSE(NONE, []string{long(256)}, http), want: []string{"too long (max 255)"}},
		{name: "host label too long", se: vtSE(NONE, []string{long(64) + ".com"}, http), want: []string{"invalid (label"}},
		{name: "host with underscore", se: vtSE(NONE, []string{"my_svc.example.com"}, http), want: []string{`label "my_svc" invalid`}},

		// ---- addresses ----
		{name: "invalid IP address", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Addresses = []string{"300.1.1.1"}
		}), want: []string{`addresses[0] "300.1.1.1": 300.1.1.1 is not a valid IP`}},
		{name: "invalid CIDR", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Addresses = []string{"10.0.0.0/33"}
		}), want: []string{"is not a valid CIDR block"}},
		{name: "CIDR with DNS resolution", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.Addresses = []string{"10.0.0.0/24"}
		}), want: []string{"CIDR addresses are allowed only for NONE/STATIC resolution types, not DNS"}},

		// ---- ports ----
		{name: "nil port", se: vtSE(NONE, host, nil), want: []string{"ports[0]: service entry port may not be null"}},
		{name: "duplicate port name", se: vtSE(NONE, host, vtPort(80, "HTTP", "web"), vtPort(81, "HTTP", "web")),
			want: []string{`ports[1] "web": service entry port name "web" already defined`}},
		{name: "duplicate port number", se: vtSE(NONE, host, vtPort(80, "HTTP", "a"), vtPort(80, "HTTP", "b")),
			want: []string{"service entry port number 80 already defined"}},
		{name: "port number 0", se: vtSE(NONE, host, vtPort(0, "HTTP", "web")), want: []string{`ports[0] "web" number: port number 0 must be in the range 1..65535`}},
		{name: "port number too large", se: vtSE(NONE, host, vtPort(65536, "HTTP", "web")), want: []string{"port number 65536 must be in the range"}},
		{name: "targetPort out of range", se: vtSE(NONE, host, &networking.ServicePort{Number: 80, Name: "web", Protocol: "HTTP", TargetPort: 70000}),
			want: []string{`ports[0] "web" targetPort: port number 70000`}},
		{name: "empty port name", se: vtSE(NONE, host, vtPort(80, "HTTP", "")), want: []string{`invalid port name ""`}},
		{name: "port name with underscore", se: vtSE(NONE, host, vtPort(80, "HTTP", "my_port")), want: []string{`invalid port name "my_port"`}},
		{name: "unknown protocol", se: vtSE(NONE, host, vtPort(80, "QUIC", "web")), want: []string{`ports[0] "web" protocol: unsupported protocol "QUIC"`}},

		// ---- resolution NONE / STATIC ----
		{name: "NONE with endpoints", se: vtWith(vtSE(NONE, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("10.0.0.1", nil)}
		}), want: []string{"no endpoints should be provided for resolution type NONE"}},
		{name: "STATIC hostname endpoint", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("backend.example.com", nil)}
		}), want: []string{`endpoint address "backend.example.com" is not a valid IP address`}},
		{name: "STATIC endpoint port not defined by service", se: vtWith(vtSE(STATIC, host, tcp), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("10.0.0.1", map[string]uint32{"http": 8080})}
		}), want: []string{`endpoint "10.0.0.1": port name "http" (8080) is not defined by the service`}},
		{name: "STATIC endpoint port value 0", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("10.0.0.1", map[string]uint32{"http": 0})}
		}), want: []string{`endpoint "10.0.0.1" ports["http"]: port number 0`}},
		{name: "STATIC endpoint without address or network", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Labels: map[string]string{"bad key!": "x"}}}
		}), want: []string{`endpoint "" address: address is required unless network is set`}, notWant: []string{"invalid tag key"}},
		{name: "STATIC endpoint without address but with network", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Network: "net-2", Ports: map[string]uint32{"http": 15443}}}
		})},
		{name: "STATIC nil endpoint", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{nil}
		}), want: []string{"endpoints[0]: endpoint cannot be nil"}},
		{name: "STATIC unix endpoint valid", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("unix:///var/run/app.sock", nil), ep("unix://@abstract", nil)}
		})},
		{name: "STATIC unix endpoint with ports", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("unix:///var/run/app.sock", map[string]uint32{"http": 80})}
		}), want: []string{"unix endpoint unix:///var/run/app.sock must not include ports"}},
		{name: "STATIC unix endpoint relative path", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("unix://run/app.sock", nil)}
		}), want: []string{"run/app.sock is not an absolute path to a file"}},
		{name: "STATIC unix endpoint with two service ports", se: vtWith(vtSE(STATIC, host, http, tcp), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("unix:///var/run/app.sock", nil)}
		}), want: []string{"exactly 1 service port required for unix endpoints, the service entry has 2"}},
		{name: "STATIC endpoint invalid label key", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Address: "10.0.0.1", Labels: map[string]string{"bad key": "v"}}}
		}), want: []string{`endpoint "10.0.0.1" labels: invalid tag key "bad key"`}},
		{name: "STATIC endpoint invalid label value", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Address: "10.0.0.1", Labels: map[string]string{"app": "-web"}}}
		}), want: []string{`invalid tag value "-web"`}},
		{name: "STATIC endpoint label key name too long", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Address: "10.0.0.1", Labels: map[string]string{"example.com/" + long(64): "v"}}}
		}), want: []string{"(name is too long)"}},
		{name: "label key with prefix is valid", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Address: "10.0.0.1", Labels: map[string]string{"topology.kubernetes.io/zone": "us-east-1a", "empty": ""}}}
		})},

		// ---- resolution DNS / DNS_ROUND_ROBIN ----
		{name: "DNS wildcard host without endpoints", se: vtSE(DNS, []string{"*.example.com"}, https),
			want: []string{`hosts[0] "*.example.com": hosts must be FQDN if no endpoints are provided for resolution mode DNS`}},
		{name: "DNS wildcard host with endpoints", se: vtWith(vtSE(DNS, []string{"*.example.com"}, https), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("proxy.example.com", nil)}
		})},
		{name: "DNS endpoint with invalid address", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("bad_host", nil)}
		}), want: []string{`address "bad_host" is not a valid FQDN or an IP address`}},
		{name: "DNS unix endpoint is not accepted", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("unix:///var/run/app.sock", nil)}
		}), want: []string{"is not a valid FQDN or an IP address"}},
		{name: "DNS endpoint port not defined", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("10.0.0.1", map[string]uint32{"grpc": 9090})}
		}), want: []string{`endpoint "10.0.0.1": port name "grpc" (9090) is not defined by the service entry`}},
		{name: "DNS endpoint invalid label", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{{Address: "b.example.com", Labels: map[string]string{"app": "a b"}}}
		}), want: []string{`invalid tag value "a b"`}},
		{name: "DNS_ROUND_ROBIN with two endpoints", se: vtWith(vtSE(RR, host, http), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("a.example.com", nil), ep("b.example.com", nil)}
		}), want: []string{"there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN (got 2)"}},
		{name: "unsupported resolution", se: vtSE(networking.ServiceEntry_Resolution(99), host, http), want: []string{"resolution 99: unsupported resolution type"}},

		// ---- workloadSelector ----
		{name: "selector and endpoints", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"app": "web"}}
			s.Endpoints = []*networking.WorkloadEntry{}
		}), want: []string{"only one of workloadSelector or endpoints is allowed"}},
		{name: "selector with wildcard stops validation", se: vtWith(vtSE(STATIC, []string{"*"}, http), func(s *networking.ServiceEntry) {
			s.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"app": "web-*"}}
		}), want: []string{`workloadSelector.labels "app=web-*": wildcard is not supported in selector`}, notWant: []string{"full wildcard"}},
		{name: "selector with empty key", se: vtWith(vtSE(STATIC, host, http), func(s *networking.ServiceEntry) {
			s.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"": "web"}}
		}), want: []string{`workloadSelector.labels "=web": empty key is not supported`}},

		// ---- several hosts ----
		{name: "multiple hosts with TCP port", se: vtSE(DNS, []string{"a.example.com", "b.example.com"}, tcp),
			want: []string{`ports[0] "tcp" protocol "TCP": multiple hosts provided with non-HTTP, non-TLS ports`}},
		{name: "multiple hosts with unset protocol", se: vtSE(STATIC, []string{"a.example.com", "b.example.com"}, vtPort(80, "", "web")),
			want: []string{"multiple hosts provided with non-HTTP, non-TLS ports"}},
		{name: "multiple hosts with HTTP and TLS ports", se: vtSE(DNS, []string{"a.example.com", "b.example.com"}, http, https)},
		{name: "multiple hosts with TCP and NONE", se: vtSE(NONE, []string{"a.example.com", "b.example.com"}, tcp)},

		// ---- exportTo ----
		{name: "exportTo valid", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.ExportTo = []string{".", "istio-system", "other-ns"}
		})},
		{name: "exportTo none alone", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) { s.ExportTo = []string{"~"} })},
		{name: "exportTo . and own namespace", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.ExportTo = []string{"default", "."}
		}), want: []string{`exportTo[1] ".": duplicate entries in exportTo: . and current namespace default`}},
		{name: "exportTo duplicate", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.ExportTo = []string{"ns1", "ns1"}
		}), want: []string{`exportTo[1] "ns1": duplicate entries in exportTo`}},
		{name: "exportTo public and more", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.ExportTo = []string{"*", "ns1"}
		}), want: []string{"cannot have both public (*) and non-public exportTo values"}},
		{name: "exportTo none and more", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.ExportTo = []string{"~", "."}
		}), want: []string{"cannot export service entry to no one (~) and someone"}},
		{name: "exportTo invalid namespace", se: vtWith(vtSE(DNS, host, http), func(s *networking.ServiceEntry) {
			s.ExportTo = []string{"bad_ns"}
		}), want: []string{`exportTo[0] "bad_ns": only .,*,~, or a valid DNS 1123 label is allowed`}},

		// ---- DYNAMIC_DNS ----
		{name: "DYNAMIC_DNS valid", se: vtSE(DYN, []string{"*.wikipedia.org"}, https, http, vtPort(8443, "GRPC", "grpc"))},
		{name: "DYNAMIC_DNS MESH_INTERNAL without waypoint", se: vtWith(vtSE(DYN, []string{"*.svc.cluster.local"}, http), func(s *networking.ServiceEntry) {
			s.Location = networking.ServiceEntry_MESH_INTERNAL
		})},
		{name: "DYNAMIC_DNS non-wildcard host", se: vtSE(DYN, host, https), want: []string{`hosts[0] "api.example.com": host must be wildcarded`}},
		{name: "DYNAMIC_DNS with addresses", se: vtWith(vtSE(DYN, []string{"*.example.com"}, https), func(s *networking.ServiceEntry) {
			s.Addresses = []string{"240.0.0.1"}
		}), want: []string{"addresses cannot be set for resolution type DYNAMIC_DNS"}},
		{name: "DYNAMIC_DNS with endpoints", se: vtWith(vtSE(DYN, []string{"*.example.com"}, https), func(s *networking.ServiceEntry) {
			s.Endpoints = []*networking.WorkloadEntry{ep("1.2.3.4", nil)}
		}), want: []string{"endpoints cannot be set for resolution type DYNAMIC_DNS"}},
		{name: "DYNAMIC_DNS with HTTPS port", se: vtSE(DYN, []string{"*.example.com"}, vtPort(443, "HTTPS", "https")),
			want: []string{`ports[0] "https" protocol "HTTPS": only HTTP, TLS, GRPC, and HTTP2 protocols`}},
		{name: "DYNAMIC_DNS nil port", se: vtSE(DYN, []string{"*.example.com"}, nil), want: []string{"ports[0]: port cannot be nil"}},
		{name: "DYNAMIC_DNS MESH_INTERNAL with waypoint",
			meta: &Meta{Name: "se", Namespace: "default", Labels: map[string]string{"istio.io/use-waypoint": "waypoint"}},
			se: vtWith(vtSE(DYN, []string{"*.svc.cluster.local"}, http), func(s *networking.ServiceEntry) {
				s.Location = networking.ServiceEntry_MESH_INTERNAL
			}), want: []string{"location MESH_INTERNAL: not supported with resolution type DYNAMIC_DNS when the ServiceEntry uses a waypoint"}},
		{name: "DYNAMIC_DNS MESH_INTERNAL with use-waypoint none",
			meta: &Meta{Name: "se", Namespace: "default", Labels: map[string]string{"istio.io/use-waypoint": "None"}},
			se: vtWith(vtSE(DYN, []string{"*.svc.cluster.local"}, http), func(s *networking.ServiceEntry) {
				s.Location = networking.ServiceEntry_MESH_INTERNAL
			})},

		// ---- metadata ----
		{name: "dry-run annotation", meta: &Meta{Name: "se", Namespace: "default", Annotations: map[string]string{"istio.io/dry-run": "true"}},
			se: vtSE(NONE, nil, http), want: []string{`metadata.annotations["istio.io/dry-run"]`}, notWant: []string{"at least one host"}},
		{name: "always-reject annotation", meta: &Meta{Name: "se", Namespace: "default", Annotations: map[string]string{"internal.istio.io/webhook-always-reject": ""}},
			se: vtSE(DNS, host, http), want: []string{"annotation found, rejecting"}},
		{name: "invalid name", meta: &Meta{Name: "My_SE", Namespace: "default"}, se: vtSE(DNS, host, http),
			want: []string{`metadata.name "My_SE": must be a lowercase RFC 1123 subdomain`}},
		{name: "empty namespace", meta: &Meta{Name: "se"}, se: vtSE(DNS, host, http), want: []string{"metadata.namespace: must not be empty"}},
		{name: "nil spec", se: nil, want: []string{"spec: service entry spec is nil"}},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d cases", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			meta := Meta{Name: "se", Namespace: "default"}
			if tt.meta != nil {
				meta = *tt.meta
			}
			vtCheck(t, ServiceEntry(meta, tt.se), tt.want, tt.notWant)
		})
	}
}

func TestValidateWorkloadEntry(t *testing.T) {
	tests := []struct {
		name    string
		we      *networking.WorkloadEntry
		want    []string
		notWant []string
	}{
		{name: "valid IP", we: &networking.WorkloadEntry{Address: "10.1.2.3", Ports: map[string]uint32{"http": 8080},
			Labels: map[string]string{"app": "web", "version": "v1"}, Network: "n1", Locality: "r/z/s", Weight: 3, ServiceAccount: "sa"}},
		{name: "valid IPv6", we: &networking.WorkloadEntry{Address: "2001:db8::10"}},
		{name: "valid FQDN (allowed standalone)", we: &networking.WorkloadEntry{Address: "vm1.example.com"}},
		{name: "valid unix socket", we: &networking.WorkloadEntry{Address: "unix:///var/run/app.sock"}},
		{name: "any port name is allowed standalone", we: &networking.WorkloadEntry{Address: "10.1.2.3", Ports: map[string]uint32{"whatever": 1}}},
		{name: "no address but network", we: &networking.WorkloadEntry{Network: "remote", Ports: map[string]uint32{"http": 8080}}},
		{name: "no address, no network", we: &networking.WorkloadEntry{Ports: map[string]uint32{"bad_name": 0}},
			want: []string{"address: address is required unless network is set"}, notWant: []string{"bad_name"}},
		{name: "invalid address", we: &networking.WorkloadEntry{Address: "not a host"},
			want: []string{`address: endpoint address "not a host" is not a valid FQDN or an IP address`}},
		{name: "IP-looking address", we: &networking.WorkloadEntry{Address: "10.0.0.256"}, want: []string{"is not a valid FQDN or an IP address"}},
		{name: "unix socket with ports", we: &networking.WorkloadEntry{Address: "unix:///s.sock", Ports: map[string]uint32{"http": 80}},
			want: []string{"ports: unix endpoint unix:///s.sock must not include ports"}},
		{name: "unix socket path ends in slash", we: &networking.WorkloadEntry{Address: "unix:///var/run/"}, want: []string{"/var/run/ is not an absolute path to a file"}},
		{name: "empty unix socket", we: &networking.WorkloadEntry{Address: "unix://"}, want: []string{"unix address must not be empty"}},
		{name: "invalid port name", we: &networking.WorkloadEntry{Address: "10.1.2.3", Ports: map[string]uint32{"http_1": 80}},
			want: []string{`ports["http_1"] name: invalid port name "http_1"`}},
		{name: "port out of range", we: &networking.WorkloadEntry{Address: "10.1.2.3", Ports: map[string]uint32{"http": 70000}},
			want: []string{`ports["http"]: port number 70000 must be in the range 1..65535`}},
		{name: "invalid label key", we: &networking.WorkloadEntry{Address: "10.1.2.3", Labels: map[string]string{"/app": "web"}},
			want: []string{`labels: invalid tag key "/app"`}},
		{name: "label DNS prefix too long", we: &networking.WorkloadEntry{Address: "10.1.2.3",
			Labels: map[string]string{strings.Repeat("a.", 127) + "ab/key": "v"}}, want: []string{"(DNS prefix is too long)"}},
		{name: "invalid label value", we: &networking.WorkloadEntry{Address: "10.1.2.3", Labels: map[string]string{"app": "web!"}},
			want: []string{`labels: invalid tag value "web!" (key "app")`}},
		{name: "nil spec", we: nil, want: []string{"spec: workload entry spec is nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vtCheck(t, WorkloadEntry(Meta{Name: "we", Namespace: "default"}, tt.we), tt.want, tt.notWant)
		})
	}

	t.Run("dry-run annotation", func(t *testing.T) {
		err := WorkloadEntry(Meta{Name: "we", Namespace: "default",
			Annotations: map[string]string{"istio.io/dry-run": "false"}}, &networking.WorkloadEntry{Address: "10.1.2.3"})
		vtCheck(t, err, []string{"istio.io/dry-run"}, nil)
	})
}

func TestValidateResourceName(t *testing.T) {
	tests := []struct {
		name, ns string
		want     []string
	}{
		{name: "web.service.consul", ns: "consul-sync"},
		{name: "a", ns: "b"},
		{name: "", ns: "default", want: []string{"metadata.name: must not be empty"}},
		{name: "web", ns: "", want: []string{"metadata.namespace: must not be empty"}},
		{name: "a/b", ns: "default", want: []string{`metadata.name "a/b": must not contain '/'`}},
		{name: "web", ns: "x/y", want: []string{`metadata.namespace "x/y": must not contain '/'`}},
		{name: "Web", ns: "default", want: []string{"lowercase RFC 1123 subdomain"}},
		{name: "web", ns: "my.ns", want: []string{`metadata.namespace "my.ns": must be a lowercase RFC 1123 label`}},
		{name: strings.Repeat("a", 254), ns: "default", want: []string{"at most 253 characters"}},
		{name: "web", ns: strings.Repeat("n", 64), want: []string{"at most 63 characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.ns, func(t *testing.T) {
			err := ResourceName(tt.name, tt.ns)
			vtCheck(t, err, tt.want, nil)
			if err != nil && !errors.Is(err, ErrInvalidResourceName) {
				t.Errorf("error does not wrap ErrInvalidResourceName: %v", err)
			}
		})
	}

	// Name errors are reported alongside spec errors, and stay identifiable.
	err := ServiceEntry(Meta{Name: "Bad", Namespace: "default"}, &networking.ServiceEntry{})
	vtCheck(t, err, []string{"metadata.name", "at least one host"}, nil)
	if !errors.Is(err, ErrInvalidResourceName) {
		t.Errorf("joined error does not wrap ErrInvalidResourceName: %v", err)
	}
	if err := ServiceEntry(Meta{Name: "ok", Namespace: "default"}, &networking.ServiceEntry{}); errors.Is(err, ErrInvalidResourceName) {
		t.Errorf("spec-only error wrongly wraps ErrInvalidResourceName: %v", err)
	}
}
