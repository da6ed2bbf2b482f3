package consul

import (
	"fmt"
	"slices"

	bexpr "github.com/hashicorp/go-bexpr"
)

// A service-resolver subset selects instances with a filter expression
// (go-bexpr, the grammar and parser Consul itself uses) evaluated on each
// health entry. Istio selects a subset by label equality on the instances,
// so a filter carries over exactly when it states label equality on the
// labels mapService writes: a conjunction ("and") of
//
//	Service.Meta.<key> == <value>     (or Service.Meta["<key>"] == "<value>")
//	"<key>=<value>" in Service.Tags   (or "<key>|<value>", or Service.Tags contains ...)
//	"<tag>" in Service.Tags           (a plain tag)
//
// The first two are the labels mapService writes for meta and key=value
// tags. A plain tag is no label, so the source writes one, "<tag>" with an
// empty value, on the instances that carry it, for the tags a subset names
// (and only with trafficPolicy on). Everything else (or, not, !=, matches,
// Node.*, Checks, Service.ID...) cannot be stated as label equality and is
// reported; so is a meta key that is no label (protocolMetaKey,
// virtualAddressKey). Keys and values go on as registered: the conversion
// cleans a subset's labels and the instances' by one policy.

// subsetSelector is what a subset filter states.
type subsetSelector struct {
	labels map[string]string
	// plainTags are the plain tags among labels, which the source writes.
	plainTags []string
}

// subsetLabels states filter as label equality, or says why it cannot.
func (m *mapper) subsetLabels(filter string) (subsetSelector, error) {
	sel := subsetSelector{labels: map[string]string{}}
	if filter == "" {
		return sel, nil
	}
	parsed, err := bexpr.Parse("", []byte(filter))
	if err != nil {
		return sel, fmt.Errorf("does not parse: %v", err)
	}
	expr, ok := parsed.(bexpr.Expression)
	if !ok {
		return sel, fmt.Errorf("does not parse")
	}
	if err := m.clauses(expr, &sel); err != nil {
		return sel, err
	}
	slices.Sort(sel.plainTags)
	return sel, nil
}

// clauses adds the label of each clause of a conjunction.
func (m *mapper) clauses(e bexpr.Expression, sel *subsetSelector) error {
	switch e := e.(type) {
	case *bexpr.BinaryExpression:
		if e.Operator != bexpr.BinaryOpAnd {
			return fmt.Errorf("uses %q: only \"and\" of label equalities can be a subset's labels", "or")
		}
		if err := m.clauses(e.Left, sel); err != nil {
			return err
		}
		return m.clauses(e.Right, sel)
	case *bexpr.UnaryExpression:
		return fmt.Errorf("uses %q: only \"and\" of label equalities can be a subset's labels", "not")
	case *bexpr.MatchExpression:
		return m.clause(e, sel)
	}
	return fmt.Errorf("holds an expression the adapter does not know")
}

func (m *mapper) clause(e *bexpr.MatchExpression, sel *subsetSelector) error {
	s := e.Selector
	switch {
	case len(s) == 3 && s[0] == "Service" && s[1] == "Meta" && e.Operator == bexpr.MatchEqual:
		return m.addLabel(sel, s[2], e.Value.Raw, "Service.Meta."+s[2], false)
	case len(s) == 2 && s[0] == "Service" && s[1] == "Tags" && e.Operator == bexpr.MatchIn:
		tag := e.Value.Raw
		if k, v, ok := splitTag(tag); ok {
			return m.addLabel(sel, k, v, fmt.Sprintf("tag %q", tag), false)
		}
		return m.addLabel(sel, tag, "", fmt.Sprintf("tag %q", tag), true)
	}
	return fmt.Errorf("clause %q %s: only Service.Meta.<key> == <value> and \"<tag>\" in Service.Tags can be stated as labels",
		s.String(), e.Operator)
}

func (m *mapper) addLabel(sel *subsetSelector, key, value, what string, plain bool) error {
	if m.isProtocolKey(key) || (m.vipKey != "" && key == m.vipKey) {
		return fmt.Errorf("%s: %q names the protocol or the virtual address, which are not instance labels", what, key)
	}
	// Any key and value: the source hands labels over as registered, and the
	// conversion applies its one label policy alike to the instances' labels
	// and to the subset's, so that the subset selects exactly the instances
	// registered with this key and value (a changed label carries a hash of
	// the original, so no other value cleans up to it).
	if old, ok := sel.labels[key]; ok && old != value {
		return fmt.Errorf("%s: asks %q to be both %q and %q", what, key, old, value)
	}
	sel.labels[key] = value
	if plain && !slices.Contains(sel.plainTags, key) {
		sel.plainTags = append(sel.plainTags, key)
	}
	return nil
}
