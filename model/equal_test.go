package model

import (
	"reflect"
	"testing"
	"time"
)

// TestEqualSeesEveryField: changing any one field of a group, a service or
// an instance, or anything in a service's traffic policy, makes Group.Equal
// false. The fields are found by reflection, so a field added later is
// covered too: Equal must compare it, or this test fails.
func TestEqualSeesEveryField(t *testing.T) {
	base := func() Group {
		return Group{Scope: "s", Services: []Service{{Instances: []Instance{{}}, Traffic: &Traffic{}}}}
	}
	if !base().Equal(base()) {
		t.Fatal("a group differs from its copy")
	}
	seen := 0
	var walk func(path string, get func(*Group) reflect.Value)
	walk = func(path string, get func(*Group) reflect.Value) {
		g := base()
		v := get(&g)
		typ := v.Type()
		if typ.Kind() == reflect.Struct && typ.PkgPath() == reflect.TypeFor[Group]().PkgPath() &&
			typ != reflect.TypeFor[Labels]() && typ != reflect.TypeFor[TargetPorts]() {
			for i := range typ.NumField() {
				f := typ.Field(i)
				walk(path+"."+f.Name, func(g *Group) reflect.Value { return get(g).Field(i) })
			}
			return
		}
		if typ.Kind() == reflect.Pointer && !v.IsNil() && typ.Elem().Kind() == reflect.Struct {
			walk(path, func(g *Group) reflect.Value { return get(g).Elem() })
			return
		}
		if !change(v) {
			t.Errorf("%s (%s): the test cannot change it; teach change", path, typ)
			return
		}
		seen++
		if g.Equal(base()) {
			t.Errorf("changing %s leaves the group Equal: compare it in model/equal.go", path)
		}
	}
	walk("Group", func(g *Group) reflect.Value { return reflect.ValueOf(g).Elem() })
	// Into the slices of the first service and instance.
	walk("Service", func(g *Group) reflect.Value { return reflect.ValueOf(&g.Services[0]).Elem() })
	walk("Instance", func(g *Group) reflect.Value { return reflect.ValueOf(&g.Services[0].Instances[0]).Elem() })
	if seen < 24 {
		t.Errorf("changed only %d fields; the walk is broken", seen)
	}
}

// change sets v to a value different from its zero (or, for a slice, from
// its length), and reports whether it knew how.
func change(v reflect.Value) bool {
	switch {
	case v.Type() == reflect.TypeFor[Labels]():
		v.Set(reflect.ValueOf(MakeLabels("k", "v")))
	case v.Type() == reflect.TypeFor[TargetPorts]():
		v.Set(reflect.ValueOf(TargetPortsFromMap(map[uint32]uint32{80: 8080})))
	case v.Type() == reflect.TypeFor[time.Duration]():
		v.SetInt(int64(time.Second))
	case v.Kind() == reflect.String:
		v.SetString(v.String() + "x")
	case v.Kind() == reflect.Bool:
		v.SetBool(!v.Bool())
	case v.CanInt():
		v.SetInt(v.Int() + 1)
	case v.CanUint():
		v.SetUint(v.Uint() + 1)
	case v.Kind() == reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.Set(reflect.Zero(v.Type()))
		}
	default:
		return false
	}
	return true
}

// TestEqualNilAndEmpty: a nil and an empty slice are the same to
// conversion, and to Equal; a missing traffic policy is not an empty one.
func TestEqualNilAndEmpty(t *testing.T) {
	a := Group{Scope: "s", Services: []Service{{Host: "h", Instances: []Instance{}}}}
	b := Group{Scope: "s", Services: []Service{{Host: "h"}}}
	if !a.Equal(b) {
		t.Error("nil and empty instances differ")
	}
	b.Services[0].Traffic = &Traffic{}
	if a.Equal(b) {
		t.Error("no traffic policy equals an empty one")
	}
}
