package registry

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrCertificate: a registry's TLS certificate does not verify.
var ErrCertificate = errors.New("the registry's TLS certificate does not verify")

// hint adds the way out to errors whose cause a user can fix: a
// certificate the system does not trust.
func hint(err error) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	if errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) {
		return fmt.Errorf("%w (%w); if you trust it, add its CA with SSL_CERT_FILE=ca.pem (or SSL_CERT_DIR), or pass --allow-insecure-registry (alias --insecure) to skip verification", ErrCertificate, err)
	}
	return err
}
