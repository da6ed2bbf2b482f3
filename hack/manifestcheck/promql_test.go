package main

import (
	"slices"
	"strings"
	"testing"
)

// parseAlert takes what Prometheus takes and names the metrics an alert reads; each mistake below is one the
// old bracket check let through, or one promtool catches.
func TestParseAlert(t *testing.T) {
	names, err := parseAlert(`sum by (namespace, pod) (increase(a_total{pod=~"x-.*"}[15m])) > 0
unless
sum by (namespace, pod) (increase(b_seconds_count[15m])) > 0 or absent({__name__="c"})`, "5m")
	if err != nil || !slices.Equal(names, []string{"a_total", "b_seconds_count", "c"}) {
		t.Errorf("metrics %v, %v", names, err)
	}
	for _, c := range []struct{ expr, forDuration, want string }{
		{`max(a) > > 0`, "", "unexpected"},
		{`rate(a[5m)`, "", "unexpected"},
		{`sum(a) by`, "", "unexpected"},
		{`nosuchfunction(a) > 0`, "", "unknown function"},
		{`a[5m]`, "", "needs an instant vector"},
		{`{__name__=~"a.*"} > 0`, "", "selects no metric by name"},
		{`a > 0`, "10 minutes", `for "10 minutes"`},
	} {
		if _, err := parseAlert(c.expr, c.forDuration); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q for %q: %v, want an error containing %q", c.expr, c.forDuration, err, c.want)
		}
	}
}
