package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/bench/internal/measure"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/served"
)

// row is one scenario's figures.
type row struct {
	Scenario string
	Clients  int
	Mode     convert.Mode
	Kind     served.Kind
	Quiet    time.Duration
	Changes  int

	Wall      time.Duration
	WallFloor time.Duration
	WallNote  string

	CPU        time.Duration
	CPUFloor   time.Duration
	AllocBytes int64
	AllocObjs  int64
	Windows    float64
	Pushes     float64 // of ServiceEntry/WorkloadEntry
	PushBytes  float64
	WireFloor  int // serialized bytes of the full sets of the pushed kinds
	kinds      int
	FlushMs    float64
	FlushN     float64
	// CopyFloor: one copy of the bytes of every reply pushed (floorSet.Copy).
	CopyFloor time.Duration

	Lat      []float64 // ms, sorted
	LatFloor time.Duration

	PeakRSS, RSS int64
	Resources    int
	Noop         bool
	Extra        string
}

var servedTypes = map[string]served.Kind{
	"networking.istio.io/v1/ServiceEntry":  served.KindServiceEntry,
	"networking.istio.io/v1/WorkloadEntry": served.KindWorkloadEntry,
}

func (r *row) fromStats(pre, post *stats, f floorSet) {
	r.CPU = time.Duration(post.CPUNs - pre.CPUNs)
	r.AllocBytes = post.AllocBytes - pre.AllocBytes
	r.AllocObjs = post.AllocObjs - pre.AllocObjs
	r.Windows = post.Windows - pre.Windows
	r.FlushMs = (post.FlushSum - pre.FlushSum) * 1000
	r.FlushN = post.FlushCount - pre.FlushCount
	var floorCPU time.Duration
	wire := 0
	for t, k := range servedTypes {
		if f.Resources[k] == 0 {
			continue
		}
		p := post.Pushes[t] - pre.Pushes[t]
		r.Pushes += p
		r.PushBytes += post.PushBytes[t] - pre.PushBytes[t]
		floorCPU += time.Duration(p * float64(f.Build[k]))
		r.CopyFloor += time.Duration(p * float64(f.Copy[k]))
		if p > 0 {
			wire += f.Bytes[k]
			r.kinds++
		}
	}
	r.WireFloor = wire
	r.CPUFloor = floorCPU
	if r.Scenario == "cold sync" {
		r.CPUFloor += f.total(f.Marshal)
	}
	if r.CPUFloor == 0 {
		r.CPUFloor = f.Build[r.Kind]
	}
	r.LatFloor = r.Quiet + f.Build[r.Kind] + f.Decode[r.Kind]
}

func (r *row) setLatency(ms []float64) {
	slices.Sort(ms)
	r.Lat = ms
}

type floorRow struct {
	set  string
	mode convert.Mode
	f    floorSet
}

type section struct {
	name string
	rows []*row
}

type report struct {
	start    time.Time
	opts     options
	env      []string
	floors   []floorRow
	sections []*section
	consul   []string
	istiod   []string
	shards   []string
	compare  []string
	notes    []string
	gobench  []string
	failures []string

	// loadAvg and since read the machine's load average and the time
	// since start; nil means the real ones (tests fix them for the golden
	// files).
	loadAvg func() string
	since   func(time.Time) time.Duration
}

func (rep *report) load() string {
	if rep.loadAvg != nil {
		return rep.loadAvg()
	}
	return measure.LoadAvg()
}

func (rep *report) elapsed() time.Duration {
	if rep.since != nil {
		return rep.since(rep.start)
	}
	return time.Since(rep.start)
}

func (rep *report) add(set string, r *row) {
	for _, s := range rep.sections {
		if s.name == set {
			s.rows = append(s.rows, r)
			return
		}
	}
	rep.sections = append(rep.sections, &section{name: set, rows: []*row{r}})
}

func (rep *report) addFloors(set string, mode convert.Mode, f floorSet) {
	rep.floors = append(rep.floors, floorRow{set: set, mode: mode, f: f})
}

func (rep *report) fail(what string, err error) {
	progress("FAILED %s: %v", what, err)
	rep.failures = append(rep.failures, fmt.Sprintf("%s: %v", what, err))
}

func (rep *report) machine() {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	rep.env = append(rep.env, fmt.Sprintf("machine: %d CPUs (%s), %s %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH))
	rep.env = append(rep.env, "load average at start: "+rep.load())
}

func ms(d time.Duration) string {
	v := float64(d) / 1e6
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func bytesH(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1fMB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fKB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0fB", b)
	}
}

func (rep *report) render() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("\n## registry-adapter benchmark (%s)\n\n", rep.start.UTC().Format("2006-01-02 15:04 UTC"))
	for _, e := range rep.env {
		w("- %s\n", e)
	}
	w("- load average at end: %s; total %s\n", rep.load(), rep.elapsed().Round(time.Second))
	w("- debounce quiet %s / max %s; clients decode istiod-style before ACK: %v; churn sampled %s at the real rate of %.0f%% of instances per minute\n\n",
		rep.opts.quiet, rep.opts.max, rep.opts.decode, rep.opts.churn, rep.opts.churnRate*100)

	w("### Floors (this run; median of 3-5)\n\n")
	w("| set | kind | resources | serialized | marshal ms | build ms | decode ms | copy ms | wire/response |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, fr := range rep.floors {
		for _, k := range served.Kinds {
			if fr.f.Resources[k] == 0 {
				continue
			}
			w("| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", fr.set, k, fr.f.Resources[k], bytesH(float64(fr.f.Bytes[k])),
				ms(fr.f.Marshal[k]), ms(fr.f.Build[k]), ms(fr.f.Decode[k]), ms(fr.f.Copy[k]), bytesH(float64(fr.f.Wire[k])))
		}
	}
	w("\nmarshal = proto.Marshal of every spec and MCP envelope; build = DiscoveryResponse from pre-serialized resources, encoded for the wire;\n")
	w("decode = istiod-style decode of one full response (wire decode, UnmarshalTo mcp.Resource, then the body);\n")
	w("copy = one copy of a full response's bytes, the physical floor of a state-of-the-world push.\n\n")

	w("### Scenarios\n\n")
	w("| set | scenario | cl | changes | time ms (x floor) | adapter CPU ms (x floor) | CPU/change | alloc/change | flush ms/window | windows | pushes/win/cl | bytes/push (x full) | ACK p50 / p99 ms (x floor) | peak RSS (KB/res) |\n")
	w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range rep.sections {
		for _, r := range s.rows {
			perWin := "-"
			if r.Windows > 0 && r.Clients > 0 {
				perWin = fmt.Sprintf("%.2f", r.Pushes/(r.Windows*float64(r.Clients)))
			}
			if r.Noop || strings.HasPrefix(r.Scenario, "cold") || strings.HasPrefix(r.Scenario, "join") || strings.HasPrefix(r.Scenario, "reconnect") {
				if r.Noop {
					perWin = fmt.Sprintf("%.0f pushes", r.Pushes)
				}
			}
			changes, perChange, allocChange := "-", "-", "-"
			if r.Changes > 0 {
				changes = strconv.Itoa(r.Changes)
				perChange = fmt.Sprintf("%.0fus", float64(r.CPU)/1e3/float64(r.Changes))
				allocChange = fmt.Sprintf("%s/%.0f obj", bytesH(float64(r.AllocBytes)/float64(r.Changes)), float64(r.AllocObjs)/float64(r.Changes))
			}
			flush := "-"
			if r.FlushN > 0 {
				flush = fmt.Sprintf("%.2f", r.FlushMs/r.FlushN)
			}
			bpp := "-"
			if r.Pushes > 0 {
				bpp = fmt.Sprintf("%s (%s)", bytesH(r.PushBytes/r.Pushes), ratio(r.PushBytes/r.Pushes, float64(r.WireFloor)/r.pushedKinds()))
			}
			lat := "-"
			if len(r.Lat) > 0 {
				p50, p99 := measure.Quantile(r.Lat, 0.5), measure.Quantile(r.Lat, 0.99)
				lat = fmt.Sprintf("%.0f / %.0f (%s / %s)", p50, p99, ratio(p50, float64(r.LatFloor)/1e6), ratio(p99, float64(r.LatFloor)/1e6))
			}
			rss := "-"
			if r.PeakRSS > 0 && r.Resources > 0 {
				rss = fmt.Sprintf("%s (%.2f)", bytesH(float64(r.PeakRSS)), float64(r.PeakRSS)/1024/float64(r.Resources))
			}
			w("| %s | %s | %d | %s | %s (%s) | %s (%s) | %s | %s | %s | %.0f | %s | %s | %s | %s |\n",
				s.name, r.Scenario, r.Clients, changes, ms(r.Wall), ratio(float64(r.Wall), float64(r.WallFloor)),
				ms(r.CPU), ratio(float64(r.CPU), float64(r.CPUFloor)), perChange, allocChange, flush, r.Windows, perWin, bpp, lat, rss)
		}
	}
	w("\nFloors of the ratios: time of a sync = marshal+decode (cold) or build+decode (join, reconnect) of every kind; time of a change round = quiet + build + decode of the pushed kind (+ the injection time of churn);\n")
	w("no-op = marshal of everything. Adapter CPU = pushes x build (+ marshal of everything for a cold sync). bytes/push vs one full response. ACK latency (change entering the adapter to the client's ACK) = quiet + build + decode.\n")
	w("CPU and allocations are the adapter process's own (getrusage, runtime/metrics), clients run in the driver process. peak RSS = VmHWM of the adapter process, reset before each scenario; KB/res = per served resource.\n")
	for _, n := range rep.notes {
		w("\n%s\n", n)
	}
	for _, sec := range []struct {
		title string
		lines []string
	}{
		{"Consul", rep.consul},
		{"Real istiod", rep.istiod},
		{"Sharding with the real istiod", rep.shards},
		{"istiod side by side", rep.compare},
		{"Go benchmarks (go test -bench -benchmem, same run)", rep.gobench},
	} {
		if len(sec.lines) == 0 {
			continue
		}
		w("\n### %s\n\n", sec.title)
		for _, l := range sec.lines {
			w("%s\n", l)
		}
	}
	w("\n### Targets\n\n")
	for _, l := range rep.targets() {
		w("- %s\n", l)
	}
	if len(rep.failures) > 0 {
		w("\n### FAILED\n\n")
		for _, f := range rep.failures {
			w("- %s\n", f)
		}
	}
	return b.String()
}

// pushedKinds is the pushes per client per window: how many kinds' full
// responses WireFloor adds up.
func (r *row) pushedKinds() float64 { return float64(max(r.kinds, 1)) }

func (rep *report) find(set, scenario string, clients int) *row {
	for _, s := range rep.sections {
		if s.name != set {
			continue
		}
		for _, r := range s.rows {
			if r.Scenario == scenario && r.Clients == clients {
				return r
			}
		}
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

func (rep *report) targets() []string {
	var out []string
	for _, s := range rep.sections {
		if r := rep.find(s.name, "cold sync", 1); r != nil {
			x := float64(r.Wall) / float64(r.WallFloor)
			out = append(out, fmt.Sprintf("full sync <= 1.3 x (marshal + decode), %s, 1 client: %.2fx (%s vs %s ms) %s",
				s.name, x, ms(r.Wall), ms(r.WallFloor), verdict(x <= 1.3)))
		}
	}
	// one change at the largest inline set
	var big, small *section
	for _, s := range rep.sections {
		if !strings.HasPrefix(s.name, "inline") {
			continue
		}
		if big == nil || s.rows[0].Resources > big.rows[0].Resources {
			big = s
		}
		if small == nil || s.rows[0].Resources < small.rows[0].Resources {
			small = s
		}
	}
	if big != nil {
		if r := rep.find(big.name, "one change", 1); r != nil && r.Windows > 0 {
			x := float64(r.CPU) / float64(r.CPUFloor)
			out = append(out, fmt.Sprintf("adapter CPU for one change <= 1.5 x build floor, %s, 1 client: %.2fx (%s ms per change vs %s ms floor) %s",
				big.name, x, ms(r.CPU/time.Duration(max(r.Changes, 1))), ms(r.CPUFloor/time.Duration(max(r.Changes, 1))), verdict(x <= 1.5)))
		}
	}
	// Against the physical floor, in every set, with the most clients run.
	for _, s := range rep.sections {
		var r *row
		for _, c := range s.rows {
			if c.Scenario == "one change" && c.Windows > 0 && c.CopyFloor > 0 && (r == nil || c.Clients > r.Clients) {
				r = c
			}
		}
		if r != nil {
			x := float64(r.CPU) / float64(r.CopyFloor)
			n := time.Duration(max(r.Changes, 1))
			out = append(out, fmt.Sprintf("adapter CPU for one change <= 2 x physical floor (one copy of each reply's bytes), %s, %d clients: %.2fx (%s ms per change vs %s ms floor) %s",
				s.name, r.Clients, x, ms(r.CPU/n), ms(r.CopyFloor/n), verdict(x <= 2)))
		}
	}
	if big != nil && small != nil && big != small {
		rb, rs := rep.find(big.name, "one change", 1), rep.find(small.name, "one change", 1)
		if rb != nil && rs != nil && rb.FlushN > 0 && rs.FlushN > 0 {
			fb, fs := rb.FlushMs/rb.FlushN, rs.FlushMs/rs.FlushN
			out = append(out, fmt.Sprintf("cache update (adapter flush: convert, diff, cache Apply) at %s <= 2 x at %s: %.3f vs %.3f ms = %.1fx %s (see the Go benchmarks for the cache alone)",
				big.name, small.name, fb, fs, fb/fs, verdict(fb <= 2*fs)))
		}
	}
	noopOK, noopSeen := true, false
	winOK, worst := true, 0.0
	for _, s := range rep.sections {
		for _, r := range s.rows {
			if r.Noop {
				noopSeen = true
				noopOK = noopOK && r.Pushes == 0
			}
			if r.Changes > 0 && !r.Noop && r.Windows > 0 {
				x := r.Pushes / (r.Windows * float64(r.Clients))
				worst = max(worst, x)
				winOK = winOK && x <= 1.0001
			}
		}
	}
	if noopSeen {
		out = append(out, "no-op refresh produces 0 pushes: "+verdict(noopOK))
	}
	out = append(out, fmt.Sprintf("at most 1 push per debounce window (per client and type): worst %.2f %s", worst, verdict(winOK)))
	if big != nil {
		peak, res := int64(0), 0
		for _, r := range big.rows {
			if r.PeakRSS > peak && r.Resources > 0 {
				peak, res = r.PeakRSS, r.Resources
			}
		}
		if r := rep.find(big.name, "cold sync", 3); r != nil && r.PeakRSS > peak {
			peak, res = r.PeakRSS, r.Resources
		}
		if res > 0 {
			kb := float64(peak) / 1024 / float64(res)
			out = append(out, fmt.Sprintf("RSS <= 4 KB per resource, %s: peak %.2f KB (%s over every scenario) %s", big.name, kb, bytesH(float64(peak)), verdict(kb <= 4)))
		}
	}
	return out
}

// goBench folds `go test -bench` output into the report: every line, and
// each benchmark as a ratio to the floor of its size from this run.
func (rep *report) goBench(path string) {
	f, err := os.Open(path)
	if err != nil {
		rep.notes = append(rep.notes, "go benchmarks: "+err.Error())
		return
	}
	defer f.Close()
	re := regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op(.*)$`)
	sizeRe := regexp.MustCompile(`N=(\d+)`)
	floorOf := map[int]floorSet{}
	for _, fr := range rep.floors {
		if fr.mode == convert.ModeInline {
			floorOf[fr.f.Resources[served.KindServiceEntry]] = fr.f
		}
	}
	rep.gobench = append(rep.gobench, "| benchmark | ns/op | B/op, allocs/op | x build floor of its N (this run) |", "|---|---:|---|---:|")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := re.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[3], 64)
		x := "-"
		if sm := sizeRe.FindStringSubmatch(m[1]); sm != nil && strings.Contains(m[1], "inline") || (sm != nil && !strings.Contains(m[1], "mode=")) {
			n, _ := strconv.Atoi(sm[1])
			if fl, ok := floorOf[n]; ok {
				x = ratio(ns, float64(fl.Build[served.KindServiceEntry]))
			}
		}
		rep.gobench = append(rep.gobench, fmt.Sprintf("| %s | %s | %s | %s |", m[1], m[3], strings.TrimSpace(m[4]), x))
	}
}

// runScript runs a repository script and returns its stdout.
func runScript(repo string, env []string, args ...string) (string, error) {
	cmd := exec.Command("bash", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	return out.String(), err
}
