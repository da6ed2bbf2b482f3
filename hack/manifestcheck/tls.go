package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
)

// xdsPortsOf is the set of xDS container port numbers (grpc-xds, grpc-xds-<i>).
func xdsPortsOf(ports map[string]int32) map[int32]bool {
	out := map[int32]bool{}
	for name, n := range ports {
		if name == xdsPort || strings.HasPrefix(name, xdsPort+"-") {
			out[n] = true
		}
	}
	return out
}

// checkServingTLS checks the key pair the xDS listener serves against the name istiod dials: the xDS Service's
// <name>.<namespace>.svc. A Secret the render makes (the chart's generated pair) must hold ca.crt, tls.crt and
// tls.key, with a certificate for that name, signed by ca.crt (which istiod reads with credentialName) and matching
// the key. A cert-manager Certificate must name that host and write that Secret, and an Issuer it names from the
// render must be one cert-manager can sign with. A Secret neither rendered nor issued is the user's (existingSecret).
func checkServingTLS(secretName string, services []*corev1.Service, xdsPorts map[int32]bool, secrets map[string]*corev1.Secret,
	certs []*cmv1.Certificate, issuers map[string]*cmv1.Issuer) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if secretName == "" {
		return []error{fmt.Errorf("config server.tls: the key pair is not in a Secret volume")}
	}
	host := ""
	for _, s := range services {
		for _, p := range s.Spec.Ports {
			if xdsPorts[p.Port] && s.Spec.ClusterIP != corev1.ClusterIPNone {
				host = s.Name + "." + s.Namespace + ".svc"
			}
		}
	}
	if host == "" {
		return []error{fmt.Errorf("config server.tls: no Service carries the xDS port, so no name for istiod to pin")}
	}
	if sec, ok := secrets[secretName]; ok {
		if sec.Type != corev1.SecretTypeTLS {
			bad("Secret %s: type %q, want %s", sec.Name, sec.Type, corev1.SecretTypeTLS)
		}
		for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
			if len(sec.Data[k]) == 0 {
				bad("Secret %s: no %s", sec.Name, k)
			}
		}
		if len(errs) > 0 {
			return errs
		}
		if _, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"]); err != nil {
			bad("Secret %s: tls.crt and tls.key: %v", sec.Name, err)
		}
		block, _ := pem.Decode(sec.Data["tls.crt"])
		if block == nil {
			return append(errs, fmt.Errorf("Secret %s: tls.crt is not PEM", sec.Name))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return append(errs, fmt.Errorf("Secret %s: tls.crt: %v", sec.Name, err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(sec.Data["ca.crt"]) {
			return append(errs, fmt.Errorf("Secret %s: ca.crt holds no PEM certificate", sec.Name))
		}
		// What istiod does: verify the chain to ca.crt for the name in sni, then pin subjectAltNames.
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			bad("Secret %s: tls.crt does not verify for %s against ca.crt: %v", sec.Name, host, err)
		}
		return errs
	}
	var issued *cmv1.Certificate
	for _, c := range certs {
		if c.Spec.SecretName == secretName {
			issued = c
		}
	}
	if issued == nil {
		return nil // the user's Secret
	}
	if !slices.Contains(issued.Spec.DNSNames, host) {
		bad("Certificate %s: dnsNames %v lack %s, the name istiod pins", issued.Name, issued.Spec.DNSNames, host)
	}
	if ref := issued.Spec.IssuerRef; ref.Kind == cmv1.IssuerKind || ref.Kind == "" {
		iss, ok := issuers[ref.Name]
		switch {
		case !ok:
			// An Issuer of the user's, outside the render.
		case iss.Spec.CA != nil:
			found := false
			for _, c := range certs {
				found = found || c.Spec.IsCA && c.Spec.SecretName == iss.Spec.CA.SecretName
			}
			if _, rendered := secrets[iss.Spec.CA.SecretName]; !found && !rendered {
				bad("Issuer %s: its CA Secret %s is made by no CA Certificate of the render", iss.Name, iss.Spec.CA.SecretName)
			}
		case iss.Spec.SelfSigned != nil:
			bad("Certificate %s: issued by the self-signed Issuer %s: its ca.crt would be the certificate itself, not a CA istiod can keep across renewals", issued.Name, iss.Name)
		}
	}
	return errs
}
