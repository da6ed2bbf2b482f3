package awsapi

import (
	"errors"
	"fmt"
	"regexp"
)

// Role is the role an AWS source may assume on top of the default
// credential chain. A source's configuration embeds it with
// `yaml:",inline"`.
type Role struct {
	// AssumeRoleARN is a role assumed (with STS AssumeRole) on top of the
	// default credential chain, e.g. for another account.
	AssumeRoleARN string `yaml:"assumeRoleArn"`
	// AssumeRoleExternalID is the external ID the role's trust policy
	// requires, if any.
	AssumeRoleExternalID string `yaml:"assumeRoleExternalId"`
	// STSEndpoint overrides the STS endpoint used to assume the role.
	STSEndpoint string `yaml:"stsEndpoint"`
}

var (
	// regionRE is an AWS region name: us-east-1, eu-central-2,
	// us-gov-west-1, cn-north-1, ap-southeast-5...
	regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	roleRE   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
)

// Validate checks the role: the ARN, and that the external ID and the STS
// endpoint come with one. The STS endpoint's URL is the source's to check,
// with its other endpoints. Errors name the field.
func (r *Role) Validate() error {
	var errs []error
	if r.AssumeRoleARN != "" && !roleRE.MatchString(r.AssumeRoleARN) {
		errs = append(errs, fmt.Errorf("assumeRoleArn: %q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", r.AssumeRoleARN))
	}
	if r.AssumeRoleARN == "" && r.AssumeRoleExternalID != "" {
		errs = append(errs, errors.New("assumeRoleExternalId: set without assumeRoleArn"))
	}
	if r.AssumeRoleARN == "" && r.STSEndpoint != "" {
		errs = append(errs, errors.New("stsEndpoint: set without assumeRoleArn"))
	}
	return errors.Join(errs...)
}

// CheckRegion checks a required AWS region name. The error names the field.
func CheckRegion(region string) error {
	switch {
	case region == "":
		return errors.New("region: required")
	case !regionRE.MatchString(region):
		return fmt.Errorf("region: %q is not an AWS region name (e.g. us-east-1)", region)
	}
	return nil
}
