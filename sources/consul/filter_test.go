package consul

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources"
)

func TestSubsetLabels(t *testing.T) {
	cfg := Config{VirtualAddressKey: "mesh-vip"}
	cfg.SetDefaults()
	m, err := newMapper(&cfg, sources.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		filter string
		labels map[string]string
		plain  []string
		err    string // a fragment of the error; "" for none
	}{
		{"", map[string]string{}, nil, ""},
		{"Service.Meta.version == v2", map[string]string{"version": "v2"}, nil, ""},
		{`Service.Meta["version"] == "v2"`, map[string]string{"version": "v2"}, nil, ""},
		{`Service.Meta.version == "v2" and "canary" in Service.Tags`, map[string]string{"version": "v2", "canary": ""}, []string{"canary"}, ""},
		{`Service.Tags contains "canary"`, map[string]string{"canary": ""}, []string{"canary"}, ""},
		{`"env=prod" in Service.Tags and "zone|a" in Service.Tags`, map[string]string{"env": "prod", "zone": "a"}, nil, ""},
		{`(Service.Meta.a == x and Service.Meta.b == y) and Service.Meta.c == "3"`, map[string]string{"a": "x", "b": "y", "c": "3"}, nil, ""},
		{`Service.Meta.version == v1 and Service.Meta.version == v1`, map[string]string{"version": "v1"}, nil, ""},
		// Not label equality.
		{`Service.Meta.version == v1 or Service.Meta.version == v2`, nil, nil, `"or"`},
		{`not Service.Meta.version == v1`, nil, nil, `"not"`},
		{`Service.Meta.version != v1`, nil, nil, "clause"},
		{`Service.Meta.version matches "v.*"`, nil, nil, "clause"},
		{`Service.Meta.version is empty`, nil, nil, "clause"},
		{`"canary" not in Service.Tags`, nil, nil, "clause"},
		{`Node.Meta.zone == a`, nil, nil, "Node.Meta.zone"},
		{`Service.ID == "web-1"`, nil, nil, "Service.ID"},
		{`Checks.Status == passing`, nil, nil, "Checks.Status"},
		// Labels the conversion changes: it changes the instances' alike
		// (one label policy), so the subset still selects exactly them.
		{`Service.Meta.version == "v 2"`, map[string]string{"version": "v 2"}, nil, ""},
		{`"bad tag!" in Service.Tags`, map[string]string{"bad tag!": ""}, []string{"bad tag!"}, ""},
		{`Service.Meta.version == v1 and Service.Meta.version == v2`, nil, nil, "both"},
		// Meta that is no label.
		{`Service.Meta.protocol == http`, nil, nil, "protocol"},
		{`Service.Meta["protocol-admin"] == grpc`, nil, nil, "protocol"},
		{`Service.Meta["mesh-vip"] == "10.0.0.1"`, nil, nil, "virtual address"},
		{`Service.Meta.version ==`, nil, nil, "does not parse"},
	} {
		sel, err := m.subsetLabels(c.filter)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one with %q", c.filter, err, c.err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.filter, err)
		case !maps.Equal(sel.labels, c.labels) || !slices.Equal(sel.plainTags, c.plain):
			t.Errorf("%q: labels %v plain %v, want %v %v", c.filter, sel.labels, sel.plainTags, c.labels, c.plain)
		}
	}
}
