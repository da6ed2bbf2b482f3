// Package cloudsource is what the cloud sources (ec2, cloudmap, gce, azure)
// share to turn a cloud's instances into services, whatever the registry:
// the host template, service names from a tag or label, port lists, the
// auto-registration key, the address types, the configuration fields they
// have in common, Retry-After hints, and their per-source metrics.
//
// Nothing here calls a cloud API: SDK setup and error classification stay
// with each cloud (sources/awsapi for AWS).
package cloudsource

import (
	"bytes"
	"regexp"
	"text/template"

	"github.com/registry-adapter/registry-adapter/model"
)

// dnsNameRE is a lower-case DNS name: what hosts and service names must look
// like.
var dnsNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ParseHostTemplate parses a host template and executes it once on sample,
// so that a reference to an unknown field fails at start.
func ParseHostTemplate(text string, sample any) (*template.Template, error) {
	t, err := template.New("hostTemplate").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	if _, err := RenderHost(t, sample); err != nil {
		return nil, err
	}
	return t, nil
}

// RenderHost executes a host template and makes the result a host by the
// one policy of every source, model.SanitizeHost.
func RenderHost(t *template.Template, data any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return model.SanitizeHost(b.String())
}
