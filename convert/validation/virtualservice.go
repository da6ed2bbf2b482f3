package validation

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// Ports pkg/config/validation/virtualservice.go (validateHTTPRoute and what
// it calls in validation.go: string matches, destinations, retries,
// rewrites, header operations) for an independent HTTP route (neither a
// delegate nor one that delegates), the only kind the adapter writes.

// validateHTTPRoute ports validateHTTPRoute for the fields the adapter sets:
// match, route, timeout, retries, rewrite and headers.
func validateHTTPRoute(errs *errorList, field string, h *networking.HTTPRoute) {
	// validateHTTPRouteConflict, without redirect or direct response.
	if len(h.Route) == 0 && h.Redirect == nil && h.DirectResponse == nil {
		errs.addf("%s: HTTP route, redirect or direct_response is required", field)
	}
	validateHTTPRouteMatchRequest(errs, field, h)
	validateHeaderOperations(errs, field+".headers", h.Headers)
	validateHTTPRetry(errs, field+".retries", h.Retries)
	validateHTTPRewrite(errs, field+".rewrite", h.Rewrite)
	validateAuthorityRewrite(errs, field, h.Rewrite, h.Headers)
	validateHTTPRouteDestinations(errs, field+".route", h.Route)
	if h.Timeout != nil {
		errs.addPrefixed(fmt.Sprintf("%s.timeout %s", field, h.Timeout.AsDuration()), validateDuration(h.Timeout))
	}
}

// validateHeaderOperations holds the header checks validateHTTPRoute and
// validateHTTPRouteDestinations share.
func validateHeaderOperations(errs *errorList, field string, hs *networking.Headers) {
	req, resp := hs.GetRequest(), hs.GetResponse()
	for _, k := range sortedKeys(req.GetAdd()) {
		errs.addPrefixed(fmt.Sprintf("%s.request.add[%q]", field, k), validateHeaderWithAuthorityOperationName(k))
		errs.addPrefixed(fmt.Sprintf("%s.request.add[%q]", field, k), validateHeaderValueConfig(req.GetAdd()[k]))
	}
	for _, k := range sortedKeys(req.GetSet()) {
		errs.addPrefixed(fmt.Sprintf("%s.request.set[%q]", field, k), validateHeaderWithAuthorityOperationName(k))
		errs.addPrefixed(fmt.Sprintf("%s.request.set[%q]", field, k), validateHeaderValueConfig(req.GetSet()[k]))
	}
	for i, k := range req.GetRemove() {
		errs.addPrefixed(fmt.Sprintf("%s.request.remove[%d] %q", field, i, k), validateHeaderOperationName(k))
	}
	for _, k := range sortedKeys(resp.GetAdd()) {
		errs.addPrefixed(fmt.Sprintf("%s.response.add[%q]", field, k), validateHeaderOperationName(k))
		errs.addPrefixed(fmt.Sprintf("%s.response.add[%q]", field, k), validateHeaderValueConfig(resp.GetAdd()[k]))
	}
	for _, k := range sortedKeys(resp.GetSet()) {
		errs.addPrefixed(fmt.Sprintf("%s.response.set[%q]", field, k), validateHeaderOperationName(k))
		errs.addPrefixed(fmt.Sprintf("%s.response.set[%q]", field, k), validateHeaderValueConfig(resp.GetSet()[k]))
	}
	for i, k := range resp.GetRemove() {
		errs.addPrefixed(fmt.Sprintf("%s.response.remove[%d] %q", field, i, k), validateHeaderOperationName(k))
	}
}

// validateAuthorityRewrite ports validateAuthorityRewrite: the authority is
// rewritten in one place at most.
func validateAuthorityRewrite(errs *errorList, field string, rw *networking.HTTPRewrite, hs *networking.Headers) {
	current := rw.GetAuthority()
	for _, m := range []map[string]string{hs.GetRequest().GetSet(), hs.GetRequest().GetAdd()} {
		for _, k := range sortedKeys(m) {
			if !isAuthorityHeader(k) {
				continue
			}
			if current != "" {
				errs.addf("%s.headers: authority header cannot be set multiple times: have %q, attempting to set %q", field, current, m[k])
				return
			}
			current = m[k]
		}
	}
}

// validateHTTPRouteMatchRequest ports validateHTTPRouteMatchRequest for
// headers, query parameters, URI and method.
func validateHTTPRouteMatchRequest(errs *errorList, field string, h *networking.HTTPRoute) {
	for i, m := range h.Match {
		if m == nil {
			continue
		}
		mf := fmt.Sprintf("%s.match[%d]", field, i)
		for _, k := range sortedKeys(m.Headers) {
			hf := fmt.Sprintf("%s.headers[%q]", mf, k)
			if m.Headers[k] == nil {
				errs.addf("%s: header match %v cannot be null", hf, k)
			}
			errs.addPrefixed(hf, validateHeaderNameOrJwtClaimRoute(k))
			errs.addPrefixed(hf, validateStringMatch(m.Headers[k], "headers"))
		}
		for _, k := range sortedKeys(m.WithoutHeaders) {
			hf := fmt.Sprintf("%s.withoutHeaders[%q]", mf, k)
			errs.addPrefixed(hf, validateHeaderNameOrJwtClaimRoute(k))
			// "*" is not a regular expression here: it means "present".
			if sm := m.WithoutHeaders[k]; sm != nil && sm.GetRegex() != "*" {
				errs.addPrefixed(hf, validateStringMatch(sm, "withoutHeaders"))
			}
		}
		errs.addPrefixed(mf+".uri", validateStringMatchRegexp(m.GetUri(), "uri"))
		errs.addPrefixed(mf+".scheme", validateStringMatch(m.GetScheme(), "scheme"))
		errs.addPrefixed(mf+".method", validateStringMatch(m.GetMethod(), "method"))
		errs.addPrefixed(mf+".authority", validateStringMatch(m.GetAuthority(), "authority"))
		for _, k := range sortedKeys(m.QueryParams) {
			errs.addPrefixed(fmt.Sprintf("%s.queryParams[%q]", mf, k), validateStringMatch(m.QueryParams[k], "queryParams"))
		}
	}
}

// validateStringMatch ports validateStringMatch: a prefix match needs a
// prefix (only the URI allows an empty one), a regex must compile.
func validateStringMatch(sm *networking.StringMatch, where string) error {
	switch sm.GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		if sm.GetPrefix() == "" {
			return fmt.Errorf("%q: prefix string match should not be empty", where)
		}
	case *networking.StringMatch_Regex:
		return validateStringMatchRegexp(sm, where)
	}
	return nil
}

func validateStringMatchRegexp(sm *networking.StringMatch, where string) error {
	if _, ok := sm.GetMatchType().(*networking.StringMatch_Regex); !ok {
		return nil
	}
	re := sm.GetRegex()
	if re == "" {
		return fmt.Errorf("%q: regex string match should not be empty", where)
	}
	return validateStringRegexp(re, where)
}

// validateStringRegexp: Envoy's RE2 program size is approximated by the
// length, as Istio does.
func validateStringRegexp(re, where string) error {
	if len(re) > 1024 {
		return fmt.Errorf("%q: regex is too large, max length allowed is 1024", where)
	}
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("%q: %w; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)", where, err)
	}
	return nil
}

// validateHTTPRouteDestinations ports validateHTTPRouteDestinations.
func validateHTTPRouteDestinations(errs *errorList, field string, ds []*networking.HTTPRouteDestination) {
	var total int32
	for i, d := range ds {
		df := fmt.Sprintf("%s[%d]", field, i)
		if d == nil {
			errs.addf("%s: weight may not be nil", df)
			continue
		}
		if d.Destination == nil {
			errs.addf("%s: destination is required", df)
		}
		validateHeaderOperations(errs, df+".headers", d.Headers)
		validateDestination(errs, df+".destination", d.Destination)
		if d.Weight < 0 {
			errs.addf("%s.weight: weight %d < 0", df, d.Weight)
		}
		total += d.Weight
	}
	if len(ds) > 1 && total == 0 {
		errs.addf("%s: total destination weight = 0", field)
	}
}

// validateDestination ports validateDestination.
func validateDestination(errs *errorList, field string, d *networking.Destination) {
	if d == nil {
		return
	}
	if d.Host == "*" {
		errs.addf("%s.host: invalid destination host %s", field, d.Host)
	} else {
		errs.addPrefixed(fmt.Sprintf("%s.host %q", field, d.Host), validateWildcardDomain(d.Host))
	}
	if d.Subset != "" {
		errs.addPrefixed(fmt.Sprintf("%s.subset %q", field, d.Subset), validateSubsetName(d.Subset))
	}
	if d.Port != nil {
		errs.addPrefixed(field+".port", validatePort(int(d.Port.GetNumber())))
	}
}

// supportedRetryOn are the retry conditions Istio accepts besides HTTP
// status codes (supportedRetryOnPolicies).
var supportedRetryOn = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true, "connect-failure": true,
	"retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true, "retriable-headers": true,
	"envoy-ratelimited": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

// validateHTTPRetry ports validateHTTPRetry.
func validateHTTPRetry(errs *errorList, field string, r *networking.HTTPRetry) {
	if r == nil {
		return
	}
	if r.Attempts < 0 {
		errs.addf("%s.attempts: attempts cannot be negative", field)
	}
	if r.Attempts == 0 && (r.PerTryTimeout != nil || r.RetryOn != "" || r.RetryRemoteLocalities != nil) {
		errs.addf("%s: http retry policy configured when attempts are set to 0 (disabled)", field)
	}
	if r.PerTryTimeout != nil {
		errs.addPrefixed(field+".perTryTimeout", validateDuration(r.PerTryTimeout))
	}
	if r.RetryOn != "" {
		for _, p := range strings.Split(r.RetryOn, ",") {
			i, _ := strconv.Atoi(p)
			if http.StatusText(i) == "" && !supportedRetryOn[p] {
				errs.addf("%s.retryOn: %q is not a valid retryOn policy", field, p)
			}
		}
	}
	if r.Backoff != nil {
		errs.addPrefixed(field+".backoff", validateDuration(r.Backoff))
	}
}

// validateHTTPRewrite ports validateHTTPRewrite.
func validateHTTPRewrite(errs *errorList, field string, rw *networking.HTTPRewrite) {
	if rw == nil {
		return
	}
	if rw.Uri != "" && rw.UriRegexRewrite != nil {
		errs.addf("%s: rewrite may only contain one of URI or UriRegexRewrite", field)
		return
	}
	if rw.Uri == "" && rw.UriRegexRewrite == nil && rw.Authority == "" {
		errs.addf("%s: rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified", field)
		return
	}
	if rr := rw.UriRegexRewrite; rr != nil {
		if rr.Match == "" || rr.Rewrite == "" {
			errs.addf("%s.uriRegexRewrite: UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified", field)
		} else if err := validateStringRegexp(rr.Match, "HTTPRewrite.UriRegexRewrite.Match"); err != nil {
			errs.addf("%s.uriRegexRewrite: UriRegexRewrite has errors: %v", field, err)
		}
	}
}
