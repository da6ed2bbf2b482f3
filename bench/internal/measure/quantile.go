// Package measure holds what the load driver's scenarios share to measure:
// quantiles of samples, what /proc says of a process (memory, CPU time, the
// load average) and a Prometheus text page read as numbers.
package measure

import (
	"cmp"
	"slices"
)

// Quantile is the p-quantile (0 <= p <= 1) of values by nearest rank: the
// element at index round(p*(n-1)) of the sorted values, so that the median
// of an even count is the upper middle one. It is the zero value when there
// are no values. values is not modified.
func Quantile[T cmp.Ordered](values []T, p float64) T {
	var zero T
	if len(values) == 0 {
		return zero
	}
	s := values
	if !slices.IsSorted(s) {
		s = slices.Clone(values)
		slices.Sort(s)
	}
	return s[int(p*float64(len(s)-1)+0.5)]
}

// Median is Quantile(values, 0.5).
func Median[T cmp.Ordered](values []T) T { return Quantile(values, 0.5) }

// Mean is the arithmetic mean of values (time.Duration included), the zero
// value when there are none. Integer means are truncated.
func Mean[T ~int64 | ~float64](values []T) T {
	var sum T
	if len(values) == 0 {
		return sum
	}
	for _, v := range values {
		sum += v
	}
	return sum / T(len(values))
}
