package adapter

import (
	"fmt"
	"time"
)

// DebounceConfig shapes the trailing debounce between source updates and
// publication: changes are published once the sources have been quiet for
// Quiet, and never later than Max after the first unpublished change. Each
// publication costs every istiod a decode of a whole type, so a burst of
// registry changes should cost one.
type DebounceConfig struct {
	Quiet time.Duration `yaml:"quiet"`
	Max   time.Duration `yaml:"max"`
}

// DefaultDebounceConfig is the debounce a configuration starts from; an
// explicit quiet: 0 stays zero (publish as soon as a change arrives, batching
// only what arrives together).
func DefaultDebounceConfig() DebounceConfig {
	return DebounceConfig{Quiet: 100 * time.Millisecond, Max: time.Second}
}

// SetDefaults fills the fields left at zero, for a configuration built in Go.
func (c *DebounceConfig) SetDefaults() {
	d := DefaultDebounceConfig()
	if c.Quiet == 0 {
		c.Quiet = d.Quiet
	}
	if c.Max == 0 {
		c.Max = d.Max
	}
}

// Validate reports an inconsistent configuration.
func (c *DebounceConfig) Validate() error {
	if c.Quiet < 0 || c.Max <= 0 {
		return fmt.Errorf("debounce: quiet must not be negative and max must be positive (quiet %s, max %s)", c.Quiet, c.Max)
	}
	if c.Max < c.Quiet {
		return fmt.Errorf("debounce.max %s is shorter than debounce.quiet %s", c.Max, c.Quiet)
	}
	return nil
}

// debouncer tracks one debounce window.
type debouncer struct {
	cfg   DebounceConfig
	first time.Time // first change of the open window; zero when none is open
}

// change records a change at now and returns when the window should close.
func (d *debouncer) change(now time.Time) time.Time {
	if d.first.IsZero() {
		d.first = now
	}
	due := now.Add(d.cfg.Quiet)
	if limit := d.first.Add(d.cfg.Max); due.After(limit) {
		due = limit
	}
	return due
}

// open reports whether changes are waiting.
func (d *debouncer) open() bool { return !d.first.IsZero() }

// close ends the window.
func (d *debouncer) close() { d.first = time.Time{} }
