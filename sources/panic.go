package sources

import (
	"fmt"
	"runtime/debug"
)

// PanicError is a panic recovered from code that handles registry data (a
// nil where an SDK promised a value, a bug that only some answer reaches).
// Every goroutine of a source that maps or reads registry data runs under
// Catch: a panic there must not take the process, and every other source,
// with it. Callers report it with the kind "panic" (Reporter.Failed) and
// keep what they served.
type PanicError struct {
	// What names the work that panicked, e.g. `mapping Consul service "web"`.
	What  string
	Value any
	// Stack is the panicking goroutine's stack, for the log.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic in %s: %v", e.What, e.Value) }

// Catch runs f and returns its error, or a *PanicError if it panicked.
func Catch(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{What: what, Value: r, Stack: debug.Stack()}
		}
	}()
	return f()
}
