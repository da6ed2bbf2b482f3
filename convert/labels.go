package convert

import (
	"fmt"
	"strings"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// What registry metadata may reach the resources. Anyone who can register a
// service in Consul or tag a cloud instance writes these labels, and istiod
// acts on labels: a Kubernetes Service selects the WorkloadEntries of its own
// namespace by label, and keys under istio.io or kubernetes.io change how
// sidecars talk to a workload (security.istio.io/tlsMode), which revision
// sees it (istio.io/rev) or what it is called in telemetry
// (service.istio.io/canonical-name). So reserved keys are never copied, and
// operators can narrow the rest (LabelOptions).

// reservedDomains are the label-key prefixes, with every subdomain, that
// registry data may not set. registry-adapter.io holds the adapter's own
// selector label.
var reservedDomains = []string{"istio.io", "kubernetes.io", "k8s.io", "registry-adapter.io"}

// reservedKey reports a label or annotation key a registry must not set:
// "istio" (the selector of istiod's and the gateways' Services), and every
// key whose prefix is a reserved domain or one of its subdomains
// (security.istio.io/tlsMode, istio.io/rev, app.kubernetes.io/name...).
func reservedKey(k string) bool {
	if k == "istio" {
		return true
	}
	i := strings.LastIndexByte(k, '/')
	if i < 0 {
		return false
	}
	prefix := strings.ToLower(k[:i])
	for _, d := range reservedDomains {
		if prefix == d || strings.HasSuffix(prefix, "."+d) {
			return true
		}
	}
	return false
}

// labelRejection explains a label or annotation key that was dropped.
func labelRejection(kind served.Kind, name, source, key string) Rejection {
	if reservedKey(key) {
		return Rejection{Kind: kind, Name: name, Source: source, Code: CodeReserved,
			Reason: fmt.Sprintf("%q is reserved for Istio and Kubernetes; a registry may not set it; dropped it", key)}
	}
	return Rejection{Kind: kind, Name: name, Source: source, Code: CodeLabel,
		Reason: fmt.Sprintf("label key %q is not a valid label key; dropped the label", key)}
}

// allowed reports whether the registry label key k passes the allow-list.
func (o LabelOptions) allowed(k string) bool {
	if len(o.Allow) == 0 {
		return true
	}
	for _, a := range o.Allow {
		if p, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(k, p) {
				return true
			}
		} else if k == a {
			return true
		}
	}
	return false
}

// sanitizeLabels returns the labels of in that policy lets through, with
// valid keys and values, and the keys it had to drop as reserved or invalid.
// Keys the allow-list leaves out are not reported: that is the operator's
// choice, not bad registry data.
func sanitizeLabels(in model.Labels, policy LabelOptions, skip string) (map[string]string, []string) {
	return sanitizeLabelsInto(make(map[string]string, in.Len()+2), in, policy, skip)
}

// sanitizeLabelsInto is sanitizeLabels into out, an empty map.
func sanitizeLabelsInto(out map[string]string, in model.Labels, policy LabelOptions, skip string) (map[string]string, []string) {
	_, hasSkip := in.Get(skip)
	if policy.Prefix == "" && len(policy.Allow) == 0 && !hasSkip && keysClean(in) {
		// Nothing to rename, so no two keys can collide.
		for k, v := range in.All() {
			out[k] = LabelValue(v)
		}
		return out, nil
	}
	var dropped []string
	// In name order (model.Labels is sorted), so that of two keys that
	// become the same, the same one wins every time.
	for k, v := range in.All() {
		if k == skip && skip != "" {
			continue // output.addresses.key: an address, not a label
		}
		if reservedKey(k) {
			dropped = append(dropped, k)
			continue
		}
		if !policy.allowed(k) {
			continue
		}
		key, ok := LabelKey(policy.Prefix + k)
		if !ok || reservedKey(key) {
			dropped = append(dropped, k)
			continue
		}
		out[key] = LabelValue(v)
	}
	return out, dropped
}

// keysClean reports whether every key of m is a valid label key the adapter
// may pass on unchanged.
func keysClean(m model.Labels) bool {
	for k := range m.All() {
		if !IsLabelKey(k) || reservedKey(k) {
			return false
		}
	}
	return true
}

// reservedAnnotations is what sanitizeAnnotations reports, without the map.
func reservedAnnotations(in model.Labels) []string {
	if keysClean(in) {
		return nil
	}
	var reserved []string
	for k := range in.All() {
		if key, ok := LabelKey(k); ok && (reservedKey(k) || reservedKey(key)) {
			reserved = append(reserved, k)
		}
	}
	return reserved
}

// sanitizeAnnotationsInto keeps the annotations whose keys are valid, and
// returns the reserved ones it dropped.
//
// out is an empty map to fill (Scratch.newMap).
func sanitizeAnnotationsInto(out map[string]string, in model.Labels) (map[string]string, []string) {
	if keysClean(in) {
		for k, v := range in.All() {
			out[k] = v
		}
		return out, nil
	}
	var reserved []string
	for k, v := range in.All() {
		key, ok := LabelKey(k)
		if !ok {
			continue
		}
		if reservedKey(k) || reservedKey(key) {
			reserved = append(reserved, k)
			continue
		}
		out[key] = v
	}
	return out, reserved
}
