package measure

import (
	"os"
	"testing"
	"time"
)

func TestStatusBytes(t *testing.T) {
	status := "Name:\tpilot-discovery\nVmPeak:\t 2000000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t   65536 kB\nThreads:\t12\n"
	for _, tc := range []struct {
		field string
		want  int64
	}{
		{"VmHWM:", 123456 * 1024},
		{"VmRSS:", 65536 * 1024},
		{"VmPeak:", 2000000 * 1024},
		{"VmSwap:", 0},          // absent
		{"VmHW", 0},             // without its colon it matches nothing numeric
		{"Name:", 0},            // not a number
		{"Threads:", 12 * 1024}, // the unit is not checked: callers ask for kB fields
	} {
		if got := statusBytes(status, tc.field); got != tc.want {
			t.Errorf("statusBytes(%q) = %d, want %d", tc.field, got, tc.want)
		}
	}
}

func TestStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
	}{
		{"plain", "42 (consul) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 9 0 1000 0 0", 2 * time.Second},
		{"name with spaces and parentheses", "42 (a b) (c)) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0", 100 * time.Millisecond},
		{"truncated", "42 (x) S 1 2 3", 0},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := statCPU(tc.stat); got != tc.want {
				t.Errorf("statCPU = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSchedstatAndLoadAvg(t *testing.T) {
	if got := schedstatCPU("123456789 1000 42\n"); got != 123456789 {
		t.Errorf("schedstatCPU = %d, want 123456789", got)
	}
	if got := schedstatCPU(""); got != 0 {
		t.Errorf("schedstatCPU(empty) = %d, want 0", got)
	}
	if got := loadAvg("0.52 0.58 0.59 1/345 12345\n"); got != "0.52 0.58 0.59" {
		t.Errorf("loadAvg = %q", got)
	}
	if got := loadAvg("0.5"); got != "?" {
		t.Errorf("loadAvg(short) = %q, want ?", got)
	}
}

// TestLiveProc reads this process's own files: the parsers must agree with
// the kernel's real layout, not only with the fixtures above.
func TestLiveProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	// RSS first: the high-water mark read after it cannot be below it.
	rss := Self.StatusBytes("VmRSS:")
	if hwm := Self.StatusBytes("VmHWM:"); hwm <= 0 || rss <= 0 || rss > hwm {
		t.Errorf("VmHWM %d, VmRSS %d: want 0 < RSS <= HWM", hwm, rss)
	}
	if got := PID(os.Getpid()).StatusBytes("VmRSS:"); got <= 0 {
		t.Errorf("PID(self).StatusBytes(VmRSS:) = %d", got)
	}
	// Burn CPU until the 10 ms ticks move, bounded.
	before := Self.CPU()
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for Self.CPU() == before && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	if Self.CPU() <= before {
		t.Errorf("CPU did not move after 5 s of spinning (%v)", before)
	}
	if p := Self.CPUPrecise(); p < before {
		t.Errorf("CPUPrecise %v below the ticks %v", p, before)
	}
	if got := PID(1 << 30).CPU(); got != 0 {
		t.Errorf("CPU of a process that does not exist = %v", got)
	}
	if got := LoadAvg(); got == "?" {
		t.Error("LoadAvg unreadable")
	}
	_ = x
}
