package measure

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		want       map[string]float64
	}{
		{"comments and blank lines skipped", "# HELP go_gc_cycles_total x\n# TYPE go_gc_cycles_total counter\n\ngo_gc_cycles_total 17\n",
			map[string]float64{"go_gc_cycles": 17}},
		{"unlabelled gauge", "go_memstats_heap_inuse_bytes 1.5e+06\n", map[string]float64{"go_memstats_heap_inuse_bytes": 1.5e6}},
		{"labels kept, _total dropped", `pilot_xds_pushes_total{type="eds"} 4` + "\n",
			map[string]float64{`pilot_xds_pushes{type="eds"}`: 4}},
		{"otel scope labels dropped and their samples added up",
			`pilot_services{otel_scope_name="a",cluster="x"} 2` + "\n" + `pilot_services{otel_scope_name="b",cluster="x"} 3` + "\n",
			map[string]float64{`pilot_services{cluster="x"}`: 5}},
		{"only otel labels: key is the bare name", `up{otel_scope_name="a"} 1` + "\n", map[string]float64{"up": 1}},
		{"not a number skipped", "broken line\nx NaNish\n", map[string]float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseText(strings.NewReader(tc.page))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("ParseText = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("pilot_services 10\n"))
	}))
	defer srv.Close()
	got, err := Scrape(srv.URL)
	if err != nil || got["pilot_services"] != 10 {
		t.Fatalf("Scrape = %v, %v", got, err)
	}
	srv.Close()
	if _, err := Scrape(srv.URL); err == nil {
		t.Error("Scrape of a closed server: no error")
	}
}
