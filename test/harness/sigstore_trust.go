package harness

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"
)

// The media types of the documents a Sigstore writes.
const (
	trustedRootMediaType   = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
	signingConfigMediaType = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
)

// trustedRoot is dev.sigstore.trustedroot.v1.TrustedRoot in the JSON
// mapping of protocol buffers: camelCase names, bytes in base64,
// timestamps in RFC 3339, enums by name.
type trustedRoot struct {
	MediaType              string                 `json:"mediaType"`
	Tlogs                  []tlog                 `json:"tlogs,omitempty"`
	CertificateAuthorities []certificateAuthority `json:"certificateAuthorities,omitempty"`
	Ctlogs                 []tlog                 `json:"ctlogs,omitempty"`
	TimestampAuthorities   []certificateAuthority `json:"timestampAuthorities,omitempty"`
}

// tlog is a TransparencyLogInstance.
type tlog struct {
	BaseURL       string    `json:"baseUrl"`
	HashAlgorithm string    `json:"hashAlgorithm"`
	PublicKey     publicKey `json:"publicKey"`
	LogID         logID     `json:"logId"`
}

type publicKey struct {
	RawBytes   []byte   `json:"rawBytes"`
	KeyDetails string   `json:"keyDetails"`
	ValidFor   validity `json:"validFor"`
}

type logID struct {
	KeyID []byte `json:"keyId"`
}

// certificateAuthority is a CertificateAuthority, for Fulcio or a TSA.
type certificateAuthority struct {
	Subject   distinguishedName `json:"subject"`
	URI       string            `json:"uri"`
	CertChain certChain         `json:"certChain"`
	ValidFor  validity          `json:"validFor"`
}

type distinguishedName struct {
	Organization string `json:"organization,omitempty"`
	CommonName   string `json:"commonName,omitempty"`
}

type certChain struct {
	Certificates []rawCertificate `json:"certificates"`
}

type rawCertificate struct {
	RawBytes []byte `json:"rawBytes"`
}

type validity struct {
	Start time.Time  `json:"start"`
	End   *time.Time `json:"end,omitempty"`
}

// signingConfig is dev.sigstore.trustedroot.v1.SigningConfig, v0.2.
type signingConfig struct {
	MediaType       string         `json:"mediaType"`
	CAURLs          []service      `json:"caUrls,omitempty"`
	OIDCURLs        []service      `json:"oidcUrls,omitempty"`
	RekorTlogURLs   []service      `json:"rekorTlogUrls,omitempty"`
	RekorTlogConfig *serviceConfig `json:"rekorTlogConfig,omitempty"`
	TSAURLs         []service      `json:"tsaUrls,omitempty"`
	TSAConfig       *serviceConfig `json:"tsaConfig,omitempty"`
}

// service is a Service: where a client finds one, and which major version
// of its API it speaks.
type service struct {
	URL             string   `json:"url"`
	MajorAPIVersion uint32   `json:"majorApiVersion"`
	ValidFor        validity `json:"validFor"`
	Operator        string   `json:"operator"`
}

// serviceConfig is a ServiceConfiguration: how many of the services a
// client uses ("ANY": one).
type serviceConfig struct {
	Selector string `json:"selector"`
	Count    uint32 `json:"count,omitempty"`
}

// authority describes a CA or TSA at uri whose chain is leaf-most first,
// trusted from since, under the name of its root.
func authority(t testing.TB, uri string, chain []*x509.Certificate, since time.Time) certificateAuthority {
	t.Helper()
	root := chain[len(chain)-1]
	ca := certificateAuthority{URI: uri, ValidFor: validity{Start: since}}
	ca.Subject.CommonName = root.Subject.CommonName
	if len(root.Subject.Organization) > 0 {
		ca.Subject.Organization = root.Subject.Organization[0]
	}
	for _, c := range chain {
		ca.CertChain.Certificates = append(ca.CertChain.Certificates, rawCertificate{RawBytes: c.Raw})
	}
	return ca
}

// rekorLog describes the Rekor v2 log at baseURL. Its log ID is the one
// rekor-tiles puts in every entry and the key hash of its checkpoint
// signatures (C2SP signed-note, Ed25519): SHA-256 over the origin, a
// newline, the signature type 0x01 and the raw public key.
func rekorLog(t testing.TB, baseURL string, key ed25519.PublicKey, since time.Time) tlog {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write([]byte(rekorOrigin + "\n"))
	h.Write([]byte{0x01})
	h.Write(key)
	return tlog{
		BaseURL:       baseURL,
		HashAlgorithm: "SHA2_256",
		PublicKey:     publicKey{RawBytes: der, KeyDetails: "PKIX_ED25519", ValidFor: validity{Start: since}},
		LogID:         logID{KeyID: h.Sum(nil)},
	}
}

// serviceAt is a service at url, speaking major version version of its API,
// run by the harness from since.
func serviceAt(url string, version uint32, since time.Time) service {
	return service{URL: url, MajorAPIVersion: version, ValidFor: validity{Start: since}, Operator: "nestattest"}
}
