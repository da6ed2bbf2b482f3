package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// parseAlert parses one alerting rule's expression with Prometheus's own PromQL parser (what `promtool check
// rules` runs, without promtool's build) and its `for` as a Prometheus duration. It returns the metric names the
// expression selects, sorted. An alert's expression must be an instant vector and select its metrics by name.
func parseAlert(expr, forDuration string) ([]string, error) {
	if forDuration != "" {
		if _, err := model.ParseDuration(forDuration); err != nil {
			return nil, fmt.Errorf("for %q: %w", forDuration, err)
		}
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	if e.Type() != parser.ValueTypeVector {
		return nil, fmt.Errorf("the expression is a %s; an alert needs an instant vector", e.Type())
	}
	var names []string
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if name == "" && m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("%s selects no metric by name", vs))
		} else if !slices.Contains(names, name) {
			names = append(names, name)
		}
		return nil
	})
	slices.Sort(names)
	return names, errors.Join(errs...)
}

// ruleFor is a rule's `for`, or "".
func ruleFor(r monitoringv1.Rule) string {
	if r.For == nil {
		return ""
	}
	return string(*r.For)
}

// alertMetrics is what `manifestcheck alerts` prints for one alert.
type alertMetrics struct {
	File    string   `json:"file"`
	Alert   string   `json:"alert"`
	Metrics []string `json:"metrics"`
}

// printAlertMetrics parses every alert of every PrometheusRule in the files (parseAlert) and prints, as JSON, the
// metric names each one selects, for the e2e test that looks for them on a running adapter. Any expression that
// does not parse is an error.
func printAlertMetrics(files []string) error {
	var out []alertMetrics
	var errs []error
	for _, f := range files {
		docs, derrs := readDocs(f)
		errs = append(errs, derrs...)
		for _, d := range docs {
			pr, ok := d.obj.(*monitoringv1.PrometheusRule)
			if !ok {
				continue
			}
			for _, g := range pr.Spec.Groups {
				for _, r := range g.Rules {
					names, err := parseAlert(r.Expr.String(), ruleFor(r))
					if err != nil {
						errs = append(errs, fmt.Errorf("%s: PrometheusRule %s alert %s: %w", f, pr.Name, r.Alert, err))
						continue
					}
					out = append(out, alertMetrics{File: f, Alert: r.Alert, Metrics: names})
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(out) == 0 {
		return errors.New("no alert in a PrometheusRule")
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
