package cloudsource

import (
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/sources"
)

// Prepare readies what a cloud source's constructor receives: it fills in
// and validates cfg, then the options a caller may leave unset (a logger
// that discards, a reporter without metrics).
func Prepare(cfg interface {
	SetDefaults()
	Validate() error
}, opts *sources.Options) error {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Reporter == nil {
		opts.Reporter = sources.NewReporter(opts.Name, nil)
	}
	return nil
}
