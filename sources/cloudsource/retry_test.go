package cloudsource

import (
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/sources/poll"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "-1": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := RetryAfter(v, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
	now = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Thu, 02 Jan 2025 03:05:05 GMT": time.Minute,
		"Thu, 02 Jan 2025 03:00:00 GMT": 0,
	} {
		if got := RetryAfter(in, now); got != want {
			t.Errorf("RetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	h := http.Header{"Retry-After": {"30"}, "X-A-Ms": {"soon"}, "X-B-Ms": {"250"}, "X-C-Ms": {"750"}}
	// The first ms header holding a positive number wins; without any,
	// Retry-After counts; a nil header has no hint.
	if got := RetryAfterHeader(h, now, "X-Missing-Ms", "X-A-Ms", "X-B-Ms", "X-C-Ms"); got != 250*time.Millisecond {
		t.Errorf("ms headers: %s", got)
	}
	if got := RetryAfterHeader(h, now); got != 30*time.Second {
		t.Errorf("Retry-After: %s", got)
	}
	if got := RetryAfterHeader(nil, now, "X-B-Ms"); got != 0 {
		t.Errorf("nil header: %s", got)
	}
}

func TestRequestResult(t *testing.T) {
	for err, want := range map[error]string{
		nil:                "ok",
		errors.New("boom"): "error",
		&poll.ThrottledError{Err: errors.New("slow down")}: "throttled",
	} {
		if got := RequestResult(err); got != want {
			t.Errorf("RequestResult(%v) = %q, want %q", err, got, want)
		}
	}
}

// TestRetryAfterOverflow: hints too large for a Duration saturate; they do
// not wrap around to a short wait.
func TestRetryAfterOverflow(t *testing.T) {
	now := time.Now()
	for _, v := range []string{"9300000000", "18446744074", "9223372036854775807"} {
		if got := RetryAfter(v, now); got != math.MaxInt64 {
			t.Errorf("RetryAfter(%q) = %v, want the largest Duration", v, got)
		}
	}
	h := http.Header{"X-Ms": {"18446744073709"}}
	if got := RetryAfterHeader(h, now, "X-Ms"); got != math.MaxInt64 {
		t.Errorf("ms header: %v", got)
	}
}
