package fidelity

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// decodeNameTable reads istio.networking.nds.v1.NameTable (istio.io/istio,
// pkg/dns/proto/nds.proto) into host -> IPs:
//
//	message NameTable {
//	  message NameInfo { repeated string ips = 1; string registry = 2; string shortname = 3;
//	                     string namespace = 4; repeated string alt_hosts = 5; }
//	  map<string, NameInfo> table = 1;   // entries: key = 1, value = 2
//	}
//
// The main module has Envoy's protos but not istio.io/istio, whose
// dependencies (client-go, the Kubernetes API and more) would triple what
// this module builds; two string fields are read here with protowire
// instead. Unknown fields are skipped, as a generated decoder would.
func decodeNameTable(b []byte) (map[string][]string, error) {
	out := map[string][]string{}
	err := fields(b, func(num protowire.Number, v []byte) error {
		if num != 1 {
			return nil
		}
		var host string
		var ips []string
		err := fields(v, func(num protowire.Number, v []byte) error {
			switch num {
			case 1:
				host = string(v)
			case 2:
				return fields(v, func(num protowire.Number, v []byte) error {
					if num == 1 {
						ips = append(ips, string(v))
					}
					return nil
				})
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.Sort(ips)
		out[host] = ips
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fidelity: decode NDS name table: %w", err)
	}
	return out, nil
}

// fields calls f with every length-delimited field of a message and skips
// the others.
func fields(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}
