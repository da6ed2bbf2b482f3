package main

// The OCI image (make image) holds the static binary and nothing else: no /etc/ssl/certs. HTTPS to Consul and to
// the cloud APIs still verifies against Mozilla's root set, which this package embeds and Go uses only when the
// system has none (x509.SetFallbackRoots). Wherever system roots exist (the Dockerfile's distroless image, a host,
// SSL_CERT_FILE), they win.
import _ "golang.org/x/crypto/x509roots/fallback"
