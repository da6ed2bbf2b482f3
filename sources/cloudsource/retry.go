package cloudsource

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// RetryAfter parses a Retry-After header value: seconds or an HTTP date.
// It returns 0 when there is no usable hint.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s > 0 {
			return seconds(s, time.Second)
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// RetryAfterHeader returns a response's retry hint: the first of msHeaders
// (headers in milliseconds, such as Azure's Retry-After-Ms and
// X-Ms-Retry-After-Ms) that holds a positive number, else Retry-After.
func RetryAfterHeader(h http.Header, now time.Time, msHeaders ...string) time.Duration {
	for _, k := range msHeaders {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return seconds(ms, time.Millisecond)
			}
		}
	}
	return RetryAfter(h.Get("Retry-After"), now)
}

// RequestResult is the "result" label of a request that ended with err
// (classified): ok, throttled (a *poll.ThrottledError) or error.
func RequestResult(err error) string {
	var throttled *poll.ThrottledError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &throttled):
		return "throttled"
	default:
		return "error"
	}
}

// seconds returns n units as a Duration, saturated rather than overflowed:
// a hint of 10^10 seconds must not wrap around to a short (or negative)
// wait. The poll loop caps the wait at maxBackoff anyway.
func seconds(n int64, unit time.Duration) time.Duration {
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64
	}
	return time.Duration(n) * unit
}
