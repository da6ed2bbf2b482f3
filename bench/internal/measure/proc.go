package measure

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Proc is a process as /proc shows it. Every reader returns zero (or "?")
// when the file cannot be read: a process that exited, or a system without
// /proc; the figures are then visibly missing rather than the run failing.
type Proc struct{ dir string }

// Self is the calling process.
var Self = Proc{dir: "/proc/self"}

// PID is the process pid.
func PID(pid int) Proc { return Proc{dir: fmt.Sprintf("/proc/%d", pid)} }

// StatusBytes reads a "kB" field of the process's status file (field
// includes its colon, as in "VmHWM:"), in bytes.
func (p Proc) StatusBytes(field string) int64 {
	b, err := os.ReadFile(filepath.Join(p.dir, "status"))
	if err != nil {
		return 0
	}
	return statusBytes(string(b), field)
}

func statusBytes(status, field string) int64 {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, field); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v * 1024
			}
		}
	}
	return 0
}

// CPU is the process's CPU time so far, user plus system, from its stat
// file: 10 ms resolution (USER_HZ = 100).
func (p Proc) CPU() time.Duration {
	b, err := os.ReadFile(filepath.Join(p.dir, "stat"))
	if err != nil {
		return 0
	}
	return statCPU(string(b))
}

func statCPU(stat string) time.Duration {
	// The command name, in parentheses, may hold spaces and parentheses: the
	// fields are counted from the last ')'.
	if i := strings.LastIndexByte(stat, ')'); i >= 0 {
		stat = stat[i+1:]
	}
	f := strings.Fields(stat)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// CPUPrecise is the CPU time of every thread of the process, in ns, from
// task/*/schedstat (threads that exited are not counted: Go's rarely do).
// Without schedstat it falls back to CPU's 10 ms ticks.
func (p Proc) CPUPrecise() time.Duration {
	dir := filepath.Join(p.dir, "task")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return p.CPU()
	}
	var t time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue
		}
		t += schedstatCPU(string(b))
	}
	return t
}

func schedstatCPU(schedstat string) time.Duration {
	if f := strings.Fields(schedstat); len(f) > 0 {
		v, _ := strconv.ParseInt(f[0], 10, 64)
		return time.Duration(v)
	}
	return 0
}

// LoadAvg is the 1, 5 and 15 minute load averages, as /proc/loadavg prints
// them, or "?".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return loadAvg(string(b))
}

func loadAvg(s string) string {
	f := strings.Fields(s)
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
