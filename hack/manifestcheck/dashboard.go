package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

type panel struct {
	ID         *int            `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	GridPos    *gridPos        `json:"gridPos"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

type gridPos struct {
	H, W, X, Y *int
}

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	metricRE = regexp.MustCompile(`\bregistry_adapter_[a-z0-9_]+`)
	// runtimeMetricRE: client_golang's Go collector (defaults include go_gc_gomemlimit_bytes) and process collector.
	runtimeMetricRE = regexp.MustCompile(`\b(go_(memstats|gc)_[a-z0-9_]+|process_resident_memory_bytes)\b`)
	variableRE      = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	builtins        = map[string]bool{"__rate_interval": true, "__interval": true, "__range": true, "__interval_ms": true, "__range_s": true}
)

// checkDashboard checks a Grafana dashboard's structure and queries, and prints the metric names it uses, one a
// line, for chart-check.sh to look up in the Go sources.
func checkDashboard(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var db dashboard
	if err := json.Unmarshal(data, &db); err != nil {
		return fmt.Errorf("%s: not valid JSON for a dashboard: %w", file, err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if db.Title == "" || db.UID == "" || db.SchemaVersion == 0 {
		bad("title, uid and schemaVersion are required")
	}
	vars := map[string]bool{}
	metrics := map[string]bool{}
	for _, v := range db.Templating.List {
		vars[v.Name] = true
		for _, m := range metricRE.FindAllString(string(v.Query), -1) {
			metrics[m] = true
		}
	}
	if !vars["datasource"] {
		bad("no datasource variable: the dashboard would be tied to one Prometheus")
	}
	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			name := fmt.Sprintf("panel %q", p.Title)
			if p.ID == nil {
				bad("%s: no id", name)
			} else if other, dup := ids[*p.ID]; dup {
				bad("%s: id %d also used by %q", name, *p.ID, other)
			} else {
				ids[*p.ID] = p.Title
			}
			if p.Type == "" || p.Title == "" {
				bad("%s: type and title are required", name)
			}
			if g := p.GridPos; g == nil || g.H == nil || g.W == nil || g.X == nil || g.Y == nil {
				bad("%s: gridPos needs h, w, x and y", name)
			} else if *g.X < 0 || *g.W <= 0 || *g.X+*g.W > 24 {
				bad("%s: gridPos x=%d w=%d does not fit 24 columns", name, *g.X, *g.W)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if !strings.Contains(string(p.Datasource), "${datasource}") {
				bad("%s: datasource must be ${datasource}", name)
			}
			if len(p.Targets) == 0 {
				bad("%s: no queries", name)
			}
			refs := map[string]bool{}
			for _, t := range p.Targets {
				if t.RefID == "" || refs[t.RefID] {
					bad("%s: missing or duplicate refId %q", name, t.RefID)
				}
				refs[t.RefID] = true
				if err := checkPromQL(t.Expr); err != nil {
					bad("%s %s: %v: %s", name, t.RefID, err, t.Expr)
				}
				for _, m := range variableRE.FindAllStringSubmatch(t.Expr, -1) {
					if !vars[m[1]] && !builtins[m[1]] {
						bad("%s %s: variable $%s is not defined in templating", name, t.RefID, m[1])
					}
				}
				found := metricRE.FindAllString(t.Expr, -1)
				// The memory row reads the Go and process collectors the adapter registers (cmd/registry-adapter).
				if len(found) == 0 && !runtimeMetricRE.MatchString(t.Expr) {
					bad("%s %s: no registry_adapter_ metric in %q", name, t.RefID, t.Expr)
				}
				for _, m := range found {
					metrics[m] = true
				}
			}
		}
	}
	walk(db.Panels)
	if len(ids) == 0 {
		bad("no panels")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s:\n%w", file, err)
	}
	names := make([]string, 0, len(metrics))
	for m := range metrics {
		names = append(names, m)
	}
	slices.Sort(names)
	fmt.Println(strings.Join(names, "\n"))
	return nil
}

// checkPromQL is a light syntax check: balanced brackets and quotes, and no empty query. (A full PromQL parser
// would pull the whole Prometheus module in.)
func checkPromQL(expr string) error {
	if strings.TrimSpace(expr) == "" {
		return errors.New("empty query")
	}
	var stack []rune
	closing := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	for _, r := range expr {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case closing[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != closing[r] {
				return fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quote != 0 || len(stack) > 0 {
		return errors.New("unclosed quote or bracket")
	}
	return nil
}
