package main

import (
	"errors"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
)

// memoryLimitRatio is the share of the container's memory limit given to Go's
// soft memory limit, as Prometheus does (--auto-gomemlimit.ratio). Without
// it the heap may grow to twice the live set: at 50k services the cold sync
// peaks near the chart's default 512 MiB limit with room to spare below it
// (BENCHMARKS.md), and the kernel kills rather than waits.
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
		log.Info("Go's memory limit follows the container's", zap.Int64("goMemLimitBytes", limit),
			zap.Float64("ratio", memoryLimitRatio))
	}
	return limit
}
