package cloudsource

import (
	"maps"
	"sync"

	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Problem is an instance or service left out, or partly left out, because
// of its data: worth a log line.
type Problem struct {
	// Name is the instance's (or service's) human name, for the log.
	Name   string
	Reason string
	Detail string
}

// Result is the outcome of mapping one complete list.
type Result struct {
	Groups []model.Group
	// Seen is the number of items the list returned.
	Seen int
	// Skipped counts the items left out (or partly left out) by reason.
	Skipped map[string]int
	// Problems are keyed by instance ID, or "service/<name>" for a whole
	// service.
	Problems map[string]Problem
	// Health counts the instances that were mapped (served, or left out
	// only for being unhealthy) by their health.
	Health map[model.Health]int
}

// NewResult returns an empty result of a list of seen items.
func NewResult(seen int) Result {
	return Result{Seen: seen, Skipped: map[string]int{}, Problems: map[string]Problem{}, Health: map[model.Health]int{}}
}

// Skip counts n items skipped for reason; a non-empty detail is also a
// problem under key, to be logged.
func (r *Result) Skip(key, name, reason, detail string, n int) {
	r.Skipped[reason] += n
	if detail != "" {
		r.Problems[key] = Problem{Name: name, Reason: reason, Detail: detail}
	}
}

// Add adds o's groups, counts and problems to r.
func (r *Result) Add(o Result) {
	r.Groups = append(r.Groups, o.Groups...)
	r.Seen += o.Seen
	for k, v := range o.Skipped {
		r.Skipped[k] += v
	}
	maps.Copy(r.Problems, o.Problems)
	for k, v := range o.Health {
		r.Health[k] += v
	}
}

// ProblemLog logs each problem once, when it first appears, rather than at
// every list, within a budget of lines (sources.LogLimit: one list can hold
// any number of bad instances; the skipped metric counts every one). Its
// methods are safe for concurrent use.
type ProblemLog struct {
	log *zap.Logger
	// msg is the log message, e.g. "EC2 instance not (fully) served".
	msg   string
	limit *sources.LogLimit

	mu     sync.Mutex
	logged map[string]Problem
}

// NewProblemLog returns a ProblemLog writing msg to log.
func NewProblemLog(log *zap.Logger, msg string) *ProblemLog {
	return &ProblemLog{log: log, msg: msg, limit: sources.NewLogLimit(sources.LogBurst, sources.LogEvery)}
}

// Log logs the problems that were not in the previous call's set. A nil
// ProblemLog logs nothing.
func (l *ProblemLog) Log(problems map[string]Problem) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, p := range problems {
		if l.logged[key] == p {
			continue
		}
		if ok, held := l.limit.Allow(); ok {
			l.log.Warn(l.msg, zap.String("key", key), zap.String("name", p.Name),
				zap.String("reason", p.Reason), zap.String("detail", p.Detail), zap.Int(sources.HeldBackField, held))
		}
	}
	l.logged = problems
}
