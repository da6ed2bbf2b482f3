package consul

import (
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Tags and meta: key=value tags, plain tags, the protocol a port declares,
// and instance labels.

// splitTag splits a "key=value" or "key|value" tag (Istio's old Consul
// registry used '|'). ok is false for plain tags.
func splitTag(tag string) (key, value string, ok bool) {
	i := strings.IndexAny(tag, "=|")
	if i <= 0 {
		return "", "", false
	}
	return tag[:i], tag[i+1:], true
}

// plainTags are the tags that are not key=value (nor key|value), sorted,
// each once.
func plainTags(tags []string) []string {
	var out []string
	for _, t := range tags {
		if _, _, kv := splitTag(t); !kv && t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// protocolValue returns the raw protocol an instance declares for the port
// named portName: meta "<key>-<port>", meta "<key>", then tags
// "<key>-<port>=x", "<key>=x" (or '|' instead of '=').
func (m *mapper) protocolValue(s *api.AgentService, portName string) string {
	keys := []string{m.protocolKey}
	if portName != "" {
		keys = []string{m.protocolKey + "-" + portName, m.protocolKey}
	}
	for _, k := range keys {
		if v := s.Meta[k]; v != "" {
			return v
		}
	}
	for _, k := range keys {
		for _, t := range s.Tags {
			if tk, tv, ok := splitTag(t); ok && tk == k && tv != "" {
				return tv
			}
		}
	}
	return ""
}

// isProtocolKey reports whether a meta key or tag key names a protocol (and so
// is not turned into a label).
func (m *mapper) isProtocolKey(k string) bool {
	return k == m.protocolKey || strings.HasPrefix(k, m.protocolKey+"-")
}

// instanceLabels builds labels from key=value / key|value tags and service
// meta (meta wins), as registered; protocol keys are left out. They are made
// valid Kubernetes labels by the one label policy of every source,
// convert's (a changed key or value gets a hash of the original, so two
// that clean up alike stay distinct; reserved keys are dropped and named).
func (m *mapper) instanceLabels(s *api.AgentService) map[string]string {
	labels := map[string]string{}
	add := func(k, v string) {
		if m.isProtocolKey(k) || (m.vipKey != "" && k == m.vipKey) {
			return
		}
		labels[k] = v
	}
	for _, t := range s.Tags {
		if k, v, ok := splitTag(t); ok {
			add(k, v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Meta)) {
		add(k, s.Meta[k])
	}
	if len(labels) == 0 {
		return nil
	}
	return labels
}
