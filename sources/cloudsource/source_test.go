package cloudsource

import (
	"errors"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources"
)

type fakeConfig struct {
	defaulted bool
	invalid   error
}

func (c *fakeConfig) SetDefaults()    { c.defaulted = true }
func (c *fakeConfig) Validate() error { return c.invalid }

func TestPrepare(t *testing.T) {
	c := &fakeConfig{}
	opts := sources.Options{Name: "x"}
	if err := Prepare(c, &opts); err != nil || !c.defaulted || opts.Logger == nil || opts.Reporter == nil ||
		opts.Reporter.Status().Name != "x" {
		t.Fatalf("Prepare: %v %+v %+v", err, c, opts)
	}
	rep := sources.NewReporter("mine", nil)
	opts = sources.Options{Name: "x", Reporter: rep}
	if err := Prepare(c, &opts); err != nil || opts.Reporter != rep {
		t.Fatalf("Prepare replaced the reporter: %v", err)
	}
	bad := errors.New("bad")
	if err := Prepare(&fakeConfig{invalid: bad}, &sources.Options{}); err != bad {
		t.Fatalf("Prepare = %v, want the validation error", err)
	}
}
