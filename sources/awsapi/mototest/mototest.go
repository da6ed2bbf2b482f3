// Package mototest runs a moto server (https://github.com/getmoto/moto), the
// AWS API emulator, for the tests of the AWS sources: one server per test
// binary, started from TestMain on a free loopback port and reset between
// tests.
package mototest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireEnv makes a missing moto a test failure rather than a skip.
const RequireEnv = "REGISTRY_ADAPTER_REQUIRE_MOTO"

// Server is a running moto server.
type Server struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:43121.
	URL    string
	client *http.Client
	tr     *http.Transport
	stop   func()
}

// command finds moto: the moto_server script, else python3 -m moto.server
// when python3 can import it.
func command() ([]string, error) {
	if p, err := exec.LookPath("moto_server"); err == nil {
		return []string{p}, nil
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil, errors.New("neither moto_server nor python3 is on PATH")
	}
	if out, err := exec.Command(py, "-c", "import moto.server").CombinedOutput(); err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return nil, fmt.Errorf("python3 cannot import moto.server: %s", lines[len(lines)-1])
	}
	return []string{py, "-m", "moto.server"}, nil
}

// Start runs moto on a free loopback port and returns once it answers. The
// process runs in its own process group, which Stop kills.
func Start() (*Server, error) {
	argv, err := command()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	s := &Server{client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr: tr}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command(argv[0], append(argv[1:], "-H", "127.0.0.1", "-p", fmt.Sprint(port))...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("MOTO_PORT=%d", port))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		logf, err := os.CreateTemp("", "moto-*.log")
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			os.Remove(logf.Name())
			return nil, fmt.Errorf("start moto: %w", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		kill := func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			logf.Close()
			os.Remove(logf.Name())
		}
		s.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
		if lastErr = s.wait(exited); lastErr == nil {
			s.stop = kill
			return s, nil
		}
		if b, err := os.ReadFile(logf.Name()); err == nil && len(b) > 0 {
			if len(b) > 500 {
				b = b[len(b)-500:]
			}
			lastErr = fmt.Errorf("%w; log: %s", lastErr, b)
		}
		kill()
	}
	tr.CloseIdleConnections()
	return nil, fmt.Errorf("moto did not start: %w", lastErr)
}

// wait polls the reset endpoint until moto answers.
func (s *Server) wait(exited <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if err := s.reset(); err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("moto exited")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("moto did not answer within 60s")
}

func (s *Server) reset() error {
	resp, err := s.client.Post(s.URL+"/moto-api/reset", "application/json", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset: %s", resp.Status)
	}
	return nil
}

// Stop kills moto and closes the client's connections. A nil server is a
// no-op.
func (s *Server) Stop() {
	if s == nil {
		return
	}
	s.stop()
	s.tr.CloseIdleConnections()
}

// Harness is what the tests of an AWS source share: one moto server per
// test binary, and the tests' own HTTP client, whose transport is closed at
// the end so that goleak sees no idle connection goroutines.
type Harness struct {
	// Server is nil when moto is not installed; Missing then says why.
	Server  *Server
	Missing error
	// URL is Server's base URL.
	URL string
	// Transport is HTTP's; tests clone it for proxies of their own.
	Transport *http.Transport
	HTTP      *http.Client
}

// NewHarness returns a harness whose server Main starts.
func NewHarness() *Harness {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &Harness{Transport: tr, HTTP: &http.Client{Transport: tr}}
}

// Main runs the tests of a package (m) from its TestMain: it applies
// TestEnv and starts moto, runs the tests, stops moto, closes the idle
// connections of the tests' client, and fails the run when leaks (the
// package's goroutine check, goleak.Find: this package does not import
// goleak, so that the e2e module needs no more than it did) finds goroutines
// left behind. It returns the exit code, for os.Exit.
func (h *Harness) Main(m *testing.M, leaks func() error) int {
	TestEnv()
	h.Server, h.Missing = Start()
	if h.Server != nil {
		h.URL = h.Server.URL
	}
	code := m.Run()
	h.Server.Stop()
	h.Transport.CloseIdleConnections()
	if code == 0 {
		if err := leaks(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

// Need skips the test when moto is absent (fails it when
// REGISTRY_ADAPTER_REQUIRE_MOTO=1) and resets moto's state (see Need).
func (h *Harness) Need(t testing.TB) {
	t.Helper()
	Need(t, h.Server, h.Missing)
}

// Need skips the test when moto is absent (why says why), or fails it
// when REGISTRY_ADAPTER_REQUIRE_MOTO=1; otherwise it resets moto's state.
func Need(t testing.TB, s *Server, why error) {
	t.Helper()
	if s == nil {
		msg := fmt.Sprintf("moto is not available (%v): install it with `pip install 'moto[server]'` "+
			"to run these tests against a real AWS API emulator", why)
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err := s.reset(); err != nil {
		t.Fatalf("reset moto: %v", err)
	}
}

// Unavailable skips a test that moto cannot serve (a feature this moto
// version lacks), or fails it when REGISTRY_ADAPTER_REQUIRE_MOTO=1: in CI
// a test must not pass by not running.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1: a skip is a failure)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// TestEnv is the environment the tests run the SDK with: static
// credentials and nothing from the machine (profiles, IMDS, endpoint
// overrides). Apply it in TestMain, before any client is made.
func TestEnv() {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "testing",
		"AWS_SECRET_ACCESS_KEY":       "testing",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
	} {
		if v == "" {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, v)
		}
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_ENDPOINT_URL_") {
			os.Unsetenv(k)
		}
	}
}
