package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// registerCertExpiry exports the served TLS certificate's expiry (only with
// TLS), for the certificate-expiry alert: a renewal that never reached the
// Secret shows here weeks before istiod refuses the handshake.
func registerCertExpiry(reg prometheus.Registerer, srv interface{ CertificateNotAfter() (time.Time, bool) }) {
	if _, ok := srv.CertificateNotAfter(); !ok {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "registry_adapter_server_tls_cert_expiry_timestamp_seconds",
		Help: "NotAfter of the TLS certificate the xDS listeners present (Unix seconds); absent without TLS.",
	}, func() float64 {
		t, _ := srv.CertificateNotAfter()
		return float64(t.Unix())
	}))
}
