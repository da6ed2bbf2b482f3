package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"go.uber.org/zap/zaptest"
)

func TestSetMemoryLimitFollowsTheContainer(t *testing.T) {
	for _, k := range []string{"AUTOMEMLIMIT", "GOMEMLIMIT"} {
		if old, ok := os.LookupEnv(k); ok {
			os.Unsetenv(k)
			t.Cleanup(func() { os.Setenv(k, old) })
		}
	}
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	const container = 1 << 30
	cases := []struct {
		name     string
		env      map[string]string
		provider func() (uint64, error)
		want     int64
	}{
		{"container limit", nil, func() (uint64, error) { return container, nil }, container * 9 / 10},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "300MiB"}, func() (uint64, error) { return container, nil }, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got := setMemoryLimit(zaptest.NewLogger(t), tc.provider)
			if got != tc.want {
				t.Errorf("setMemoryLimit = %d, want %d", got, tc.want)
			}
			if tc.want > 0 {
				if applied := debug.SetMemoryLimit(-1); applied != tc.want {
					t.Errorf("runtime memory limit %d, want %d", applied, tc.want)
				}
			}
		})
	}
}
