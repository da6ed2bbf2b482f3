package main

import (
	"errors"
	"math"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
)

// memoryLimitRatio is the share of the container's memory limit given to Go's
// soft memory limit, as Prometheus does (--auto-gomemlimit.ratio). Without
// it the heap may grow to twice the live set: at 50k services the cold sync
// peaks at 522-526 MiB of RSS without a limit (BENCHMARKS.md): a 512 MiB
// limit fits about 40k ServiceEntries inline or 75k WorkloadEntry-mode
// instances (docs/configuration.md), and near it the collector works harder
// where the kernel would kill.
const memoryLimitRatio = 0.9

// setMemoryLimit sets Go's soft memory limit from the cgroup's memory limit,
// unless GOMEMLIMIT is set (or AUTOMEMLIMIT=off). It returns the limit set,
// 0 if none.
func setMemoryLimit(log *zap.Logger, provider memlimit.Provider) int64 {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		log.Info("memory limit from GOMEMLIMIT", zap.String("GOMEMLIMIT", v))
		return 0
	}
	limit, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithRatio(memoryLimitRatio), memlimit.WithProvider(provider))
	switch {
	case errors.Is(err, memlimit.ErrNoCgroup):
		log.Debug("no cgroup memory limit; Go's memory limit stays unset")
	case err != nil:
		log.Warn("cannot read the cgroup memory limit; Go's memory limit stays unset", zap.Error(err))
	case limit > 0:
		// AUTOMEMLIMIT=0.8 changes the ratio inside the library: log the one applied, not the default.
		fields := []zap.Field{zap.Int64("goMemLimitBytes", limit)}
		if total, err := provider(); err == nil && total > 0 {
			fields = append(fields, zap.Uint64("containerLimitBytes", total),
				zap.Float64("ratio", math.Round(float64(limit)/float64(total)*1000)/1000))
		}
		log.Info("Go's memory limit follows the container's", fields...)
	}
	return limit
}
