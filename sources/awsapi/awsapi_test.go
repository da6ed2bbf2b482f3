package awsapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"go.uber.org/goleak"

	"github.com/registry-adapter/registry-adapter/sources/poll"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_ACCESS_KEY_ID", "testing")
	os.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Unsetenv("AWS_PROFILE")
	goleak.VerifyTestMain(m)
}

// errorServer answers every STS query with an error document of this code
// and status, and counts the requests.
func errorServer(t *testing.T, status int, code string, header http.Header) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>`, code)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func call(t *testing.T, url string, attempts int) error {
	t.Helper()
	cfg, tr, err := Load(context.Background(), Options{Region: "us-east-1", MaxAttempts: attempts})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	client := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(url) })
	_, err = client.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err == nil {
		t.Fatal("no error")
	}
	return err
}

// Throttles are not retried by the SDK: the poll helper backs off instead.
func TestThrottleNotRetried(t *testing.T) {
	srv, n := errorServer(t, http.StatusBadRequest, "Throttling", http.Header{"Retry-After": {"7"}})
	err := Classify(call(t, srv.URL, 3))
	var te *poll.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter != 7*time.Second {
		t.Fatalf("Classify = %#v", err)
	}
	if poll.ErrorKind(err) != "throttled" {
		t.Fatalf("kind %q", poll.ErrorKind(err))
	}
	if n.Load() != 1 {
		t.Fatalf("%d requests, want 1", n.Load())
	}
}

func TestServerErrorRetried(t *testing.T) {
	srv, n := errorServer(t, http.StatusInternalServerError, "InternalError", nil)
	err := Classify(call(t, srv.URL, 2))
	var te *poll.ThrottledError
	if errors.As(err, &te) || poll.ErrorKind(err) != "api" {
		t.Fatalf("a 500 classified as %v", err)
	}
	if n.Load() != 2 {
		t.Fatalf("%d requests, want 2", n.Load())
	}
}

func TestHTTP429IsThrottle(t *testing.T) {
	srv, _ := errorServer(t, http.StatusTooManyRequests, "SomethingElse", nil)
	if !IsThrottle(call(t, srv.URL, 1)) {
		t.Fatal("429 is not a throttle")
	}
}

func TestSessionName(t *testing.T) {
	if got := SessionName("aws-prod"); got != "registry-adapter-aws-prod" {
		t.Fatal(got)
	}
	if got := SessionName("a b/ü" + string(make([]byte, 80))); len(got) != 64 {
		t.Fatalf("%q (%d)", got, len(got))
	}
}
