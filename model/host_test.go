package model

import (
	"strings"
	"testing"
)

func TestSanitizeHost(t *testing.T) {
	long := strings.Repeat("a", 70)
	for _, tt := range []struct{ in, want, err string }{
		{in: "web.service.consul", want: "web.service.consul"},
		{in: " Web.Service.Consul. ", want: "web.service.consul"},
		{in: "web_api.example.com", want: "web-api.example.com"},
		{in: "Web API.x", want: "web-api.x"},
		{in: "-a-..b-", want: "a.b"},
		{in: "café.x", want: "caf.x"},
		{in: long + ".x", want: strings.Repeat("a", 63) + ".x"},
		{in: "_.-", err: "empty after sanitizing"},
		{in: "", err: "empty after sanitizing"},
		{in: strings.Repeat("abcdefgh.", 30), err: "longer than 253"},
	} {
		got, err := SanitizeHost(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("SanitizeHost(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("SanitizeHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		// The policy is idempotent: a sanitized host is kept as it is.
		if again, err := SanitizeHost(got); err != nil || again != got {
			t.Errorf("SanitizeHost(%q) = %q, %v; not idempotent", got, again, err)
		}
	}
}
