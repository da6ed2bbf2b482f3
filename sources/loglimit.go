package sources

import (
	"sync"
	"time"
)

// LogLimit bounds the warnings that registry data can cause. Whoever can
// register a service writes that data, and one answer can hold any number of
// bad items (a review's single Consul answer produced 99,999 log lines): each
// item is still counted in a metric, but only a burst of lines is written at
// once, and then one per interval. Each line written carries the number held
// back before it (HeldBackField). Its methods are safe for concurrent use; a
// nil LogLimit allows everything.
type LogLimit struct {
	burst int
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	tokens int
	last   time.Time // when tokens were last refilled
	held   int
}

// HeldBackField is the log field that carries the lines held back.
const HeldBackField = "warningsNotLogged"

// Default bounds of the warnings about registry data: a burst of
// LogBurst lines, then one every LogEvery.
const (
	LogBurst = 20
	LogEvery = time.Second
)

// NewLogLimit allows burst lines at once, then one every interval.
func NewLogLimit(burst int, every time.Duration) *LogLimit {
	return &LogLimit{burst: burst, every: every, now: time.Now, tokens: burst}
}

// Allow reports whether a line may be written now and, if so, how many were
// held back since the last line written.
func (l *LogLimit) Allow() (ok bool, heldBack int) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.last.IsZero() {
		l.last = now
	}
	if n := int(now.Sub(l.last) / l.every); n > 0 {
		l.tokens = min(l.burst, l.tokens+n)
		l.last = l.last.Add(time.Duration(n) * l.every)
	}
	if l.tokens == 0 {
		l.held++
		return false, 0
	}
	l.tokens--
	heldBack, l.held = l.held, 0
	return true, heldBack
}
