package cloudsource

import (
	"context"
	"net/http"
	"sync"
)

// Client is a cloud source's API client, made on first use rather than at
// start, so that a credential problem shows as a failing source rather than
// a daemon that will not start. A lister embeds it for its
// CloseIdleConnections (Lister). Its methods are safe for concurrent use,
// and a nil Client's CloseIdleConnections does nothing.
type Client[A any] struct {
	newAPI func(ctx context.Context) (A, *http.Transport, error)

	mu   sync.Mutex
	api  A
	made bool
	// transport is the client's own, so that its idle connections can be
	// closed; nil when a test set the client's.
	transport *http.Transport
}

// NewClient returns a client that newAPI makes on first use, with the
// transport whose idle connections CloseIdleConnections closes (nil: none).
// newAPI may read what a test sets after the source is built.
func NewClient[A any](newAPI func(ctx context.Context) (A, *http.Transport, error)) *Client[A] {
	return &Client[A]{newAPI: newAPI}
}

// ReadyClient returns a client that is already made (tests' fakes).
func ReadyClient[A any](api A) *Client[A] { return &Client[A]{api: api, made: true} }

// API returns the client, making it on the first call that succeeds.
func (c *Client[A]) API(ctx context.Context) (A, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.made {
		api, tr, err := c.newAPI(ctx)
		if err != nil {
			var none A
			return none, err
		}
		c.api, c.transport, c.made = api, tr, true
	}
	return c.api, nil
}

// CloseIdleConnections releases idle connections; the client stays usable.
func (c *Client[A]) CloseIdleConnections() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}
