package model

import "testing"

func TestLocalAddress(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "127.9.9.9": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback",
		"localhost": "loopback", "LocalHost.": "loopback", "db.localhost": "loopback",
		"169.254.169.254": "link-local", "fe80::1": "link-local", "::ffff:169.254.0.1": "link-local",
		"0.0.0.0": "unspecified", "::": "unspecified",
		"224.0.0.1": "multicast", "ff02::1": "multicast",
		"10.0.0.1": "", "2001:db8::1": "", "db.example.com": "", "localhost.example.com": "", "": "",
		"128.0.0.1": "", "169.255.0.1": "",
	} {
		if got := LocalAddress(addr); got != want {
			t.Errorf("LocalAddress(%q) = %q, want %q", addr, got, want)
		}
	}
}
