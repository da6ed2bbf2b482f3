// Package awsapi is what the AWS sources (ec2, cloudmap) share: the SDK
// configuration from the default credential chain with an optional assumed
// role, an HTTP client whose connections the source closes when it stops,
// and the classification of throttling errors for the poll helper.
//
// Credentials are never logged: nothing here logs, and errors from the SDK
// carry no secrets.
package awsapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// Options select the region and credentials.
type Options struct {
	Region string
	// Role, when AssumeRoleARN is set, is assumed with STS on top of the
	// default chain.
	Role
	// SessionName names the role session (CloudTrail shows it).
	SessionName string
	// MaxAttempts is the SDK's attempts per request (default 3).
	MaxAttempts int
}

// Load builds the SDK configuration: the default credential chain
// (environment, shared files, web identity, ECS, IMDS), then the assumed
// role if any. It reads local files but calls no AWS API: credentials are
// fetched on the first request.
//
// Every request, STS included, goes through the returned transport, which
// the caller closes the idle connections of when it stops. It has the SDK's
// transport settings, AWS_CA_BUNDLE included, and follows no redirect.
//
// The SDK retries transient errors (5xx, connection errors) up to
// MaxAttempts within one list, but never throttling errors: those go back
// to the poll helper, which backs off across lists.
func Load(ctx context.Context, o Options) (aws.Config, *http.Transport, error) {
	attempts := o.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(o.Region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = attempts
				so.MaxBackoff = 2 * time.Second
				so.Retryables = append([]retry.IsErrorRetryable{
					retry.NoRetryCanceledError{},
					retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
						if IsThrottle(err) {
							return aws.FalseTernary
						}
						return aws.UnknownTernary
					}),
				}, so.Retryables...)
			})
		}),
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, nil, fmt.Errorf("aws configuration: %w", err)
	}
	// LoadDefaultConfig leaves a BuildableClient (with AWS_CA_BUNDLE's
	// roots) or none; its transport is copied into a client the caller owns.
	bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok || bc == nil {
		bc = awshttp.NewBuildableClient()
	}
	tr := bc.GetTransport()
	cfg.HTTPClient = &http.Client{
		Transport: tr,
		// The AWS query APIs never redirect; a redirect is answered as is
		// (and fails as an unexpected response) rather than followed with
		// the request's signature.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if o.AssumeRoleARN != "" {
		client := sts.NewFromConfig(cfg, func(so *sts.Options) {
			if o.STSEndpoint != "" {
				so.BaseEndpoint = aws.String(o.STSEndpoint)
			}
		})
		prov := stscreds.NewAssumeRoleProvider(client, o.AssumeRoleARN, func(ao *stscreds.AssumeRoleOptions) {
			ao.RoleSessionName = SessionName(o.SessionName)
			if o.AssumeRoleExternalID != "" {
				ao.ExternalID = aws.String(o.AssumeRoleExternalID)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(prov)
	}
	return cfg, tr, nil
}

// SessionName makes a valid role session name ([\w+=,.@-], 2-64
// characters) from a source name.
func SessionName(source string) string {
	var b strings.Builder
	b.WriteString("registry-adapter")
	if source != "" {
		b.WriteByte('-')
	}
	for _, r := range source {
		if r < 128 && (r == '_' || r == '+' || r == '=' || r == ',' || r == '.' || r == '@' || r == '-' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// IsThrottle reports whether err is an AWS throttling error: one of the
// SDK's throttle codes (RequestLimitExceeded, Throttling,
// ThrottlingException...) or an HTTP 429.
func IsThrottle(err error) bool {
	if err == nil {
		return false
	}
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool() {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusTooManyRequests
}

// Classify wraps a throttling error in a *poll.ThrottledError, with the
// response's Retry-After hint when it has one; other errors are returned
// unchanged.
func Classify(err error) error {
	if !IsThrottle(err) {
		return err
	}
	var after time.Duration
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		after = cloudsource.RetryAfterHeader(re.Response.Header, time.Now())
	}
	return &poll.ThrottledError{Err: err, RetryAfter: after}
}
