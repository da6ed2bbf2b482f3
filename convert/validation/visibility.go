package validation

import "errors"

// validateVisibility ports pkg/config/visibility/visibility.go's
// Instance.Validate.
func validateVisibility(v string) error {
	switch v {
	case ".", "*":
		return nil
	case "~":
		return errors.New("exportTo ~ (none) is not allowed for Istio configuration objects")
	}
	if !isDNS1123Label(v) {
		return errors.New("only .,*,~, or a valid DNS 1123 label is allowed as exportTo entry")
	}
	return nil
}
