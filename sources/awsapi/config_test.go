package awsapi

import (
	"strings"
	"testing"
)

func TestRoleAndRegion(t *testing.T) {
	for _, tt := range []struct {
		role Role
		want string
	}{
		{Role{}, ""},
		{Role{AssumeRoleARN: "arn:aws:iam::123456789012:role/mesh-reader", AssumeRoleExternalID: "x", STSEndpoint: "http://sts"}, ""},
		{Role{AssumeRoleARN: "mesh-reader"}, `assumeRoleArn: "mesh-reader" is not an IAM role ARN`},
		{Role{AssumeRoleExternalID: "x", STSEndpoint: "http://sts"},
			"assumeRoleExternalId: set without assumeRoleArn\nstsEndpoint: set without assumeRoleArn"},
	} {
		err := tt.role.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want %q", tt.role, err, tt.want)
		}
	}
	for region, want := range map[string]string{
		"us-gov-west-1": "", "": "region: required", "US East": `region: "US East" is not an AWS region name (e.g. us-east-1)`,
	} {
		if err := CheckRegion(region); (err == nil) != (want == "") || (err != nil && err.Error() != want) {
			t.Errorf("CheckRegion(%q) = %v, want %q", region, err, want)
		}
	}
}
