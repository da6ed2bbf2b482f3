package convert

import (
	"bytes"
	"encoding/json"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/model"
)

// FuzzService feeds arbitrary registry data through the conversion. Whatever
// comes in, nothing panics, everything served passes istiod's validation and
// has a valid name, and the output is deterministic.
func FuzzService(f *testing.F) {
	for _, tc := range GoldenCases() {
		for _, c := range tc.Contribs {
			b, _ := json.Marshal(c.Service)
			f.Add(tc.Host, b, tc.Opts.Mode == ModeInline)
		}
	}
	f.Add("ünïcode.example.com", []byte(`{"Ports":[{"Number":80,"Protocol":"HTTP"}],"Instances":[{"ID":"x","Address":"fe80::1%eth0"}]}`), false)
	f.Add("a..b", []byte(`{"Ports":[{"Number":65536}],"Labels":{"/":"/"},"Instances":[{"ID":"","Address":""}]}`), true)
	f.Fuzz(func(t *testing.T, host string, data []byte, inline bool) {
		var svc model.Service
		if err := json.Unmarshal(data, &svc); err != nil {
			return
		}
		svc.Host = host
		opts := defaultOpts()
		if inline {
			opts.Mode = ModeInline
		}
		contribs := []Contribution{{Source: "fuzz", Service: svc}}
		res, rejected := Service(host, contribs, opts)
		for _, r := range rejected {
			if r.Reason == "" || r.Code == "" {
				t.Errorf("rejection without reason or code: %+v", r)
			}
		}
		for _, r := range res {
			if !IsResourceName(r.Name) {
				t.Errorf("invalid name %q", r.Name)
			}
			for k, v := range r.Labels {
				if !IsLabelKey(k) || !IsLabelValue(v) {
					t.Errorf("invalid label %q=%q on %s", k, v, r.Key())
				}
			}
			var err error
			switch spec := r.Spec.(type) {
			case *networking.ServiceEntry:
				err = validation.ServiceEntry(metaOf(r), spec)
			case *networking.WorkloadEntry:
				err = validation.WorkloadEntry(metaOf(r), spec)
			}
			if err != nil {
				t.Errorf("served %s %s fails validation: %v", r.Kind, r.Key(), err)
			}
			if _, err := r.Entry(); err != nil {
				t.Error(err)
			}
		}
		again, _ := Service(host, contribs, opts)
		a, _ := YAML(res, RenderOptions{WithVersion: true})
		b, _ := YAML(again, RenderOptions{WithVersion: true})
		if !bytes.Equal(a, b) {
			t.Error("conversion is not deterministic")
		}
	})
}
