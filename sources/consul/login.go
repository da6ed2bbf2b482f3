package consul

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// LoginConfig exchanges a JWT (a Kubernetes service account token, or any
// JWT a Consul `jwt` or `kubernetes` auth method accepts) for a Consul ACL
// token with /v1/acl/login, as consul-k8s does.
type LoginConfig struct {
	// AuthMethod is the name of the Consul auth method.
	AuthMethod string `yaml:"authMethod"`
	// BearerTokenFile holds the JWT; it is re-read at every login (Kubernetes
	// rotates projected tokens).
	BearerTokenFile string `yaml:"bearerTokenFile"`
	// Meta is set on the tokens the login creates (shown in Consul's UI).
	Meta map[string]string `yaml:"meta"`
}

// DefaultBearerTokenFile is the pod's service account token.
const DefaultBearerTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// reloginAt is when a token that lives ttl should be replaced, counted from
// its creation: at 80% of its life, so that a failing login has time to be
// retried before the token expires.
func reloginAt(ttl time.Duration) time.Duration { return ttl * 8 / 10 }

// login exchanges the JWT for a token.
func (s *Source) login(ctx context.Context) (*api.ACLToken, error) {
	lc := s.cfg.Login
	jwt, err := readSecretFile("login.bearerTokenFile", lc.BearerTokenFile)
	if err != nil {
		return nil, &queryError{kind: "acl", err: err}
	}
	s.tokens.addSecret(jwt)
	var tok *api.ACLToken
	_, err = s.do(ctx, request{endpoint: "login", class: classRead, token: new(string),
		fetch: func(q *api.QueryOptions) (*api.QueryMeta, error) {
			wo := (&api.WriteOptions{Datacenter: q.Datacenter, Namespace: q.Namespace, Partition: q.Partition}).WithContext(q.Context())
			var err error
			tok, _, err = s.client.ACL().Login(&api.ACLLoginParams{AuthMethod: lc.AuthMethod, BearerToken: jwt, Meta: lc.Meta}, wo)
			return &api.QueryMeta{}, err
		}})
	if err != nil {
		return nil, fmt.Errorf("login with auth method %q: %w", lc.AuthMethod, err)
	}
	if tok == nil || tok.SecretID == "" {
		return nil, &queryError{kind: "acl", err: fmt.Errorf("login with auth method %q: Consul returned no token", lc.AuthMethod)}
	}
	s.tokens.addSecret(tok.SecretID)
	return tok, nil
}

// logout destroys a token the login created. The source's context is done
// by then: it gets a few seconds of its own.
func (s *Source) logout(token string) {
	if token == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A read's slot: over plain HTTP a request needs a connection, and the
	// connections are bounded to the slots.
	release, _, err := s.slots.acquire(ctx, classRead, nil)
	if err != nil {
		s.log.Warn("Consul logout not sent; the token stays until it expires", zap.Error(err))
		return
	}
	defer release()
	_, err = s.client.ACL().Logout((&api.WriteOptions{Token: token, Datacenter: s.cfg.Datacenter,
		Namespace: s.cfg.Namespace, Partition: s.cfg.Partition}).WithContext(ctx))
	if err != nil {
		s.log.Warn("Consul logout failed; the token stays until it expires", zap.Error(s.tokens.redactErr(err)))
		return
	}
	s.log.Debug("logged out of Consul")
}

// firstLogin logs in until it works or ctx ends; the watches start after it.
func (s *Source) firstLogin(ctx context.Context) (*api.ACLToken, error) {
	for failures := 1; ; failures++ {
		tok, err := s.login(ctx)
		if err == nil {
			return tok, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		kind := "acl"
		var qe *queryError
		if errors.As(err, &qe) {
			kind = qe.kind
		}
		s.log.Warn("Consul login failed; retrying with backoff", zap.Error(err))
		s.reporter.Failed(kind, err)
		if !sleep(ctx, s.backoff(failures)) {
			return nil, ctx.Err()
		}
	}
}

// keepLoggedIn logs in again before the token expires, or when Consul refused
// it (403: deleted, expired, or its rights taken away), then logs the old
// token out. It returns the token in use when ctx ends, for the final
// logout.
func (s *Source) keepLoggedIn(ctx context.Context, tok *api.ACLToken) string {
	current := tok
	refused := 0 // logins in a row triggered by a refusal, for backoff
	for {
		var renew <-chan time.Time
		timer := time.NewTimer(0)
		timer.Stop()
		if current.ExpirationTime != nil && !current.CreateTime.IsZero() {
			d := reloginAt(current.ExpirationTime.Sub(current.CreateTime)) - time.Since(current.CreateTime)
			timer.Reset(max(d, 0))
			renew = timer.C
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return current.SecretID
		case <-renew:
			refused = 0
			s.log.Info("Consul token expires soon; logging in again")
		case tok := <-s.refused:
			timer.Stop()
			if tok != current.SecretID {
				continue // refused before the last login replaced it
			}
			refused++
			if refused > 1 && !sleep(ctx, s.backoff(refused-1)) {
				return current.SecretID
			}
			s.log.Info("Consul refused the token (403); logging in again")
		}
		next, err := s.firstLogin(ctx)
		if err != nil {
			return current.SecretID
		}
		if s.tokens.set(next.SecretID) {
			s.epoch().bump()
		}
		s.logout(current.SecretID)
		current = next
	}
}
