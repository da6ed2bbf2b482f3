package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsyaml "sigs.k8s.io/yaml"
)

// validateRules checks a PrometheusRule beyond its strict decoding: every rule is an alert with an expression
// Prometheus's PromQL parser takes (parseAlert), a severity and a runbook_url, names are unique. hack/chart-check.sh
// also runs `promtool check rules` (templates included) on the groups `manifestcheck rules` prints, when promtool
// is built.
func validateRules(pr *monitoringv1.PrometheusRule) []error {
	var errs []error
	fl := metavalidation.ValidateObjectMeta(&pr.ObjectMeta, true, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	if err := fl.ToAggregate(); err != nil {
		errs = append(errs, fmt.Errorf("PrometheusRule %s: %w", pr.Name, err))
	}
	seen := map[string]bool{}
	for _, g := range pr.Spec.Groups {
		for i, r := range g.Rules {
			where := fmt.Sprintf("PrometheusRule %s group %s rule %d (%s)", pr.Name, g.Name, i, r.Alert)
			switch {
			case r.Alert == "":
				errs = append(errs, fmt.Errorf("%s: not an alert", where))
			case seen[r.Alert]:
				errs = append(errs, fmt.Errorf("%s: alert name used twice", where))
			}
			seen[r.Alert] = true
			if _, err := parseAlert(r.Expr.String(), ruleFor(r)); err != nil {
				errs = append(errs, fmt.Errorf("%s: expr: %w", where, err))
			}
			if r.Labels["severity"] == "" {
				errs = append(errs, fmt.Errorf("%s: no severity label", where))
			}
			if !strings.Contains(r.Annotations["runbook_url"], "#") || r.Annotations["summary"] == "" {
				errs = append(errs, fmt.Errorf("%s: want a summary and a runbook_url with an #anchor", where))
			}
		}
	}
	return errs
}

// printRules prints the rule groups of every PrometheusRule in the files as one Prometheus rules file, for
// `promtool check rules`.
func printRules(files []string) error {
	var groups []monitoringv1.RuleGroup
	var errs []error
	for _, f := range files {
		docs, derrs := readDocs(f)
		errs = append(errs, derrs...)
		for _, d := range docs {
			if pr, ok := d.obj.(*monitoringv1.PrometheusRule); ok {
				groups = append(groups, pr.Spec.Groups...)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(groups) == 0 {
		return errors.New("no PrometheusRule")
	}
	out, err := sigsyaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}
