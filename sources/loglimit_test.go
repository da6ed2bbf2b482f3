package sources

import (
	"testing"
	"time"
)

func TestLogLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLogLimit(3, time.Second)
	l.now = func() time.Time { return now }
	allow := func() (int, int) {
		written, held := 0, 0
		for range 100_000 {
			if ok, h := l.Allow(); ok {
				written++
				held += h
			}
		}
		return written, held
	}
	// One answer of 100,000 bad items: the burst is written, nothing more.
	if w, h := allow(); w != 3 || h != 0 {
		t.Fatalf("first answer: %d lines written carrying %d held back; want 3 and 0", w, h)
	}
	// A second later, one more line, which says how many it follows.
	now = now.Add(time.Second)
	if ok, h := l.Allow(); !ok || h != 99_997 {
		t.Fatalf("a second later: ok %v, held back %d; want true, 99997", ok, h)
	}
	if ok, _ := l.Allow(); ok {
		t.Fatal("a second line within the second was allowed")
	}
	// After a quiet while, the burst again, and no more.
	now = now.Add(time.Hour)
	if w, h := allow(); w != 3 || h != 1 {
		t.Fatalf("after an hour: %d lines written carrying %d held back; want 3 and 1", w, h)
	}
	var nilLimit *LogLimit
	if ok, h := nilLimit.Allow(); !ok || h != 0 {
		t.Errorf("nil limit: %v, %d", ok, h)
	}
}
