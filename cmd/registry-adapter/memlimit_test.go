package main

import (
	"bytes"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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
		ratio    string // the ratio logged
	}{
		{"container limit", nil, func() (uint64, error) { return container, nil }, container * 9 / 10, `"ratio": 0.9`},
		{"AUTOMEMLIMIT ratio", map[string]string{"AUTOMEMLIMIT": "0.8"}, func() (uint64, error) { return container, nil }, container * 8 / 10, `"ratio": 0.8`},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "300MiB"}, func() (uint64, error) { return container, nil }, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var logs bytes.Buffer
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zap.InfoLevel))
			got := setMemoryLimit(log, tc.provider)
			if got != tc.want {
				t.Errorf("setMemoryLimit = %d, want %d", got, tc.want)
			}
			if tc.ratio != "" && !strings.Contains(strings.ReplaceAll(logs.String(), `":`, `": `), tc.ratio) {
				t.Errorf("logged %s, want %s", logs.String(), tc.ratio)
			}
			if tc.want > 0 {
				if applied := debug.SetMemoryLimit(-1); applied != tc.want {
					t.Errorf("runtime memory limit %d, want %d", applied, tc.want)
				}
			}
		})
	}
}
