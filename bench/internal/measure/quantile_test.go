package measure

import (
	"slices"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []float64
		p      float64
		want   float64
	}{
		{"none", nil, 0.5, 0},
		{"one", []float64{7}, 0.99, 7},
		{"median of odd count", []float64{3, 1, 2}, 0.5, 2},
		{"median of even count is the upper middle", []float64{4, 1, 3, 2}, 0.5, 3},
		{"p0 is the minimum", []float64{5, 9, 1}, 0, 1},
		{"p1 is the maximum", []float64{5, 9, 1}, 1, 9},
		{"p99 of 10 rounds to the last", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99, 10},
		{"p90 of 10 rounds to index 8", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 0.9, 9},
		{"p25 of 5 is index 1", []float64{50, 40, 30, 20, 10}, 0.25, 20},
		{"already sorted", []float64{1, 2, 3, 4, 5}, 0.75, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.values)
			if got := Quantile(in, tc.p); got != tc.want {
				t.Errorf("Quantile(%v, %v) = %v, want %v", tc.values, tc.p, got, tc.want)
			}
			if !slices.Equal(in, tc.values) {
				t.Errorf("Quantile reordered its input: %v, was %v", in, tc.values)
			}
		})
	}
}

func TestMedianAndMeanOfDurations(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name         string
		values       []time.Duration
		median, mean time.Duration
	}{
		{"none", nil, 0, 0},
		{"one", []time.Duration{3 * ms}, 3 * ms, 3 * ms},
		{"odd", []time.Duration{9 * ms, 1 * ms, 2 * ms}, 2 * ms, 4 * ms},
		{"even", []time.Duration{1 * ms, 2 * ms, 10 * ms, 3 * ms}, 3 * ms, 4 * ms},
		{"mean truncates", []time.Duration{1, 2}, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Median(tc.values); got != tc.median {
				t.Errorf("Median(%v) = %v, want %v", tc.values, got, tc.median)
			}
			if got := Mean(tc.values); got != tc.mean {
				t.Errorf("Mean(%v) = %v, want %v", tc.values, got, tc.mean)
			}
		})
	}
}
