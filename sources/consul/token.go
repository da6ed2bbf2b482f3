package consul

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
)

// tokenSource holds the ACL token. A token read from a file is re-read by
// refresh.
type tokenSource struct {
	file string // "" for a static token

	mu    sync.Mutex
	token string
	seen  []string // every token held, for redaction
}

// newTokenSource resolves the token: cfg.Token, cfg.TokenFile, then (with
// env) CONSUL_HTTP_TOKEN_FILE, then CONSUL_HTTP_TOKEN.
func newTokenSource(token, file string, env bool) (*tokenSource, error) {
	if token == "" && file == "" && env {
		if file = os.Getenv("CONSUL_HTTP_TOKEN_FILE"); file == "" {
			token = os.Getenv("CONSUL_HTTP_TOKEN")
		}
	}
	t := &tokenSource{file: file}
	if file != "" {
		tok, err := readTokenFile(file)
		if err != nil {
			return nil, err
		}
		token = tok
	}
	t.setLocked(token)
	return t, nil
}

func readTokenFile(file string) (string, error) { return readSecretFile("tokenFile", file) }

// readSecretFile reads a token from a file. An empty file is an error: it is
// a file caught being rewritten, or a mount gone wrong, not a request to
// continue as Consul's anonymous token.
func readSecretFile(key, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is configuration, not a secret; the contents never appear.
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("%s: cannot read %s: %w", key, file, pe.Err)
		}
		return "", fmt.Errorf("%s: cannot read %s", key, file)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s: %s is empty", key, file)
	}
	return tok, nil
}

func (t *tokenSource) setLocked(tok string) {
	t.token = tok
	if tok != "" {
		for _, s := range t.seen {
			if s == tok {
				return
			}
		}
		t.seen = append(t.seen, tok)
	}
}

// set replaces the token and reports whether it changed.
func (t *tokenSource) set(tok string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok == t.token {
		return false
	}
	t.setLocked(tok)
	return true
}

// addSecret adds a secret to redact from every error and log (a JWT, a token
// from a login).
func (t *tokenSource) addSecret(secret string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if secret != "" && !slices.Contains(t.seen, secret) {
		t.seen = append(t.seen, secret)
	}
}

// get returns the current token.
func (t *tokenSource) get() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.token
}

// refresh re-reads the token file and reports whether the token changed.
func (t *tokenSource) refresh() (bool, error) {
	if t.file == "" {
		return false, nil
	}
	tok, err := readTokenFile(t.file)
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok == t.token {
		return false, nil
	}
	t.setLocked(tok)
	return true, nil
}

// redact removes every token this source ever held from s.
func (t *tokenSource) redact(s string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tok := range t.seen {
		s = strings.ReplaceAll(s, tok, "<redacted>")
	}
	return s
}

// redactedError is an error whose message had the tokens removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Unwrap keeps errors.As working for the classification (StatusError,
// net.Error); the wrapped error is never printed.
func (e *redactedError) Unwrap() error { return e.err }

func (t *tokenSource) redactErr(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: t.redact(err.Error()), err: err}
}

// epochs lets the source re-issue every query at once: when the ACL token
// changes (what a token may read changed, but no Consul index did) and when
// Consul's index went backwards (Consul restored from a snapshot or replaced:
// blocked health queries would otherwise wait for an index that may never
// come). Each request runs under the current epoch's context.
//
// An epochs belongs to one run of the source: it is made from the run's
// context when Run starts and closed when Run ends. A restarted source (after
// a cap breach or a recovered panic) gets a new one; a closed epoch is never
// current again, since every request under it would be cancelled at once and
// re-issued, in a tight loop.
type epochs struct {
	mu     sync.Mutex
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
}

func newEpochs(parent context.Context) *epochs {
	e := &epochs{parent: parent}
	e.ctx, e.cancel = context.WithCancel(parent)
	return e
}

func (e *epochs) current() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ctx
}

// bump ends the current epoch: in-flight requests are cancelled and re-issued
// as non-blocking reads.
func (e *epochs) bump() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cancel()
	e.ctx, e.cancel = context.WithCancel(e.parent)
}

// close ends the last epoch, at the end of the run.
func (e *epochs) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cancel()
}
