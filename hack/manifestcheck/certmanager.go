package main

import (
	"fmt"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateCertificate holds a cert-manager Certificate to what cert-manager's webhook would refuse, as far as the
// chart uses it (cert-manager's own validation package is internal).
func validateCertificate(d *doc, c *cmv1.Certificate) []error {
	fl := metavalidation.ValidateObjectMeta(&c.ObjectMeta, true, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	spec := field.NewPath("spec")
	if c.Spec.SecretName == "" {
		fl = append(fl, field.Required(spec.Child("secretName"), ""))
	}
	if c.Spec.CommonName == "" && len(c.Spec.DNSNames) == 0 {
		fl = append(fl, field.Required(spec.Child("dnsNames"), "a certificate names at least one host"))
	}
	if c.Spec.IssuerRef.Name == "" {
		fl = append(fl, field.Required(spec.Child("issuerRef", "name"), ""))
	}
	if k := c.Spec.IssuerRef.Kind; k != "" && k != cmv1.IssuerKind && k != cmv1.ClusterIssuerKind && c.Spec.IssuerRef.Group == "cert-manager.io" {
		fl = append(fl, field.NotSupported(spec.Child("issuerRef", "kind"), k, []string{cmv1.IssuerKind, cmv1.ClusterIssuerKind}))
	}
	if c.Spec.Duration != nil && c.Spec.RenewBefore != nil && c.Spec.RenewBefore.Duration >= c.Spec.Duration.Duration {
		fl = append(fl, field.Invalid(spec.Child("renewBefore"), c.Spec.RenewBefore.Duration.String(), "must be shorter than duration"))
	}
	if pk := c.Spec.PrivateKey; pk != nil {
		switch pk.Algorithm {
		case "", cmv1.RSAKeyAlgorithm, cmv1.ECDSAKeyAlgorithm, cmv1.Ed25519KeyAlgorithm:
		default:
			fl = append(fl, field.NotSupported(spec.Child("privateKey", "algorithm"), pk.Algorithm, []string{"RSA", "ECDSA", "Ed25519"}))
		}
	}
	if err := fl.ToAggregate(); err != nil {
		return []error{fmt.Errorf("%s: validation: %w", d, err)}
	}
	return nil
}

// validateIssuer: exactly one issuer type, as cert-manager requires.
func validateIssuer(d *doc, i *cmv1.Issuer) []error {
	fl := metavalidation.ValidateObjectMeta(&i.ObjectMeta, true, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	n := 0
	for _, set := range []bool{i.Spec.SelfSigned != nil, i.Spec.CA != nil, i.Spec.ACME != nil, i.Spec.Vault != nil, i.Spec.Venafi != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		fl = append(fl, field.Invalid(field.NewPath("spec"), n, "exactly one issuer type (selfSigned, ca, acme, vault, venafi)"))
	}
	if i.Spec.CA != nil && i.Spec.CA.SecretName == "" {
		fl = append(fl, field.Required(field.NewPath("spec", "ca", "secretName"), ""))
	}
	if err := fl.ToAggregate(); err != nil {
		return []error{fmt.Errorf("%s: validation: %w", d, err)}
	}
	return nil
}
