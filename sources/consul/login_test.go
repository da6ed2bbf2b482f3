package consul

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/sources"
)

// signJWT makes an ES256 JWT with the given claims.
func signJWT(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		must(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "ES256", "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	must(t, err)
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestConsulLogin logs in with a `jwt` auth method (static keys, as a
// Kubernetes service account token would be checked), reads with the token
// the binding rule gives, logs in again when Consul refuses the token, and
// logs out on shutdown.
func TestConsulLogin(t *testing.T) {
	t.Parallel()
	const root = "b1a2c3d4-0000-4000-8000-0000000login"
	a := startAgent(t, agentOpts{readyToken: root, args: []string{"-hcl",
		`acl { enabled = true default_policy = "deny" tokens { initial_management = "` + root + `" agent = "` + root + `" } }`}})
	c := a.client(t, root)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	must(t, err)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	_, _, err = c.ACL().PolicyCreate(&api.ACLPolicy{Name: "ra-read",
		Rules: `service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }`}, nil)
	must(t, err)
	_, _, err = c.ACL().RoleCreate(&api.ACLRole{Name: "registry-adapter", Policies: []*api.ACLRolePolicyLink{{Name: "ra-read"}}}, nil)
	must(t, err)
	_, _, err = c.ACL().AuthMethodCreate(&api.ACLAuthMethod{Name: "test-jwt", Type: "jwt", Config: map[string]any{
		"JWTValidationPubKeys": []string{pub},
		"BoundIssuer":          "test-issuer",
		"BoundAudiences":       []string{"consul"},
		"ClaimMappings":        map[string]string{"sub": "sub"},
	}}, nil)
	must(t, err)
	_, _, err = c.ACL().BindingRuleCreate(&api.ACLBindingRule{AuthMethod: "test-jwt", BindType: api.BindingRuleBindTypeRole,
		BindName: "registry-adapter", Selector: `value.sub == "system:serviceaccount:mesh:registry-adapter"`}, nil)
	must(t, err)
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "li-web-1", Name: "li-web", Port: 80}))

	jwtFile := filepath.Join(t.TempDir(), "token")
	jwt := signJWT(t, key, map[string]any{"iss": "test-issuer", "aud": "consul", "sub": "system:serviceaccount:mesh:registry-adapter",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	must(t, os.WriteFile(jwtFile, []byte(jwt), 0o600))
	loginTokens := func() []*api.ACLTokenListEntry {
		t.Helper()
		all, _, err := c.ACL().TokenListFiltered(api.ACLTokenFilterOptions{AuthMethod: "test-jwt"}, nil)
		must(t, err)
		return all
	}

	cfg := testConfig(a.addr, "li-")
	cfg.Login = &LoginConfig{AuthMethod: "test-jwt", BearerTokenFile: jwtFile, Meta: map[string]string{"pod": "mesh/registry-adapter-0"}}
	h := runSource(t, cfg)
	h.next("initial")
	if ids(h.state.svc("li-web")) != "dev/li-web-1" {
		t.Fatalf("after login: %s", h.state)
	}
	first := loginTokens()
	if len(first) != 1 {
		t.Fatalf("tokens of the auth method: %d, want 1", len(first))
	}

	// The token is deleted (an operator, or its expiry): Consul refuses it
	// (403), the source logs in again and goes on.
	_, err = c.ACL().TokenDelete(first[0].AccessorID, nil)
	must(t, err)
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "li-new-1", Name: "li-new", Port: 80}))
	h.waitStatus("logged in again and li-new read", func(sources.Status) bool {
		return h.logs.FilterMessageSnippet("logging in again").Len() > 0 && h.state.svc("li-new") != nil
	})
	second := loginTokens()
	if len(second) != 1 || second[0].AccessorID == first[0].AccessorID {
		t.Fatalf("after the re-login: %d tokens (first %s)", len(second), first[0].AccessorID)
	}

	// Shutdown logs out: the auth method has no token left.
	h.stop()
	if n := len(loginTokens()); n != 0 {
		t.Errorf("tokens of the auth method after shutdown: %d, want 0 (logout)", n)
	}
	text := h.allLogText() + h.reporter.Status().LastError
	for _, secret := range []string{jwt, root} {
		if strings.Contains(text, secret) {
			t.Errorf("a secret appears in the logs or status")
		}
	}

	// A JWT the auth method does not accept: an ACL error, no state.
	bad := filepath.Join(t.TempDir(), "bad")
	other := signJWT(t, key, map[string]any{"iss": "someone-else", "aud": "consul", "sub": "x"})
	must(t, os.WriteFile(bad, []byte(other), 0o600))
	cfg2 := testConfig(a.addr, "li-")
	cfg2.Login = &LoginConfig{AuthMethod: "test-jwt", BearerTokenFile: bad}
	h2 := runSource(t, cfg2)
	st := h2.waitStatus("failed", func(s sources.Status) bool { return s.LastError != "" })
	if st.Synced || strings.Contains(st.LastError, other) {
		t.Errorf("status %+v", st)
	}
	h2.noBatch("nothing is sent without a login")
}

func TestReloginAt(t *testing.T) {
	for _, tc := range []struct{ ttl, want time.Duration }{
		{10 * time.Minute, 8 * time.Minute},
		{time.Hour, 48 * time.Minute},
		{time.Minute, 48 * time.Second},
	} {
		if got := reloginAt(tc.ttl); got != tc.want {
			t.Errorf("reloginAt(%s) = %s, want %s", tc.ttl, got, tc.want)
		}
	}
}
