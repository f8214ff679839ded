package attest

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
)

// Kind is what a signed payload says about its subject.
type Kind string

// The kinds.
const (
	// KindSignature: the subject is signed (cosign sign).
	KindSignature Kind = "signature"
	// KindAttestation: an in-toto statement about the subject is signed
	// (cosign attest).
	KindAttestation Kind = "attestation"
)

// Payload media types.
const (
	// PayloadSimpleSigning is cosign's simple-signing payload, signed as it
	// is: a signature in the legacy layout.
	PayloadSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// PayloadInToto is an in-toto statement, signed in a DSSE envelope.
	PayloadInToto = "application/vnd.in-toto+json"
)

// Subject is the manifest a signature or attestation is about, in the
// repository that stores it.
type Subject struct {
	Repository name.Repository
	// Descriptor has the manifest's digest, size and media type.
	Descriptor v1.Descriptor
}

// Digest returns the subject as repository@digest.
func (s Subject) Digest() name.Digest { return s.Repository.Digest(s.Descriptor.Digest.String()) }

// Signed is one signature or attestation, whichever layout stores it: what
// was signed, the signature, and what verifies it.
type Signed struct {
	Subject Subject
	Kind    Kind
	// PayloadType is PayloadSimpleSigning or PayloadInToto.
	PayloadType string
	Payload     []byte
	// Signature is over Message(): the payload itself for simple signing,
	// the DSSE pre-authentication encoding of an in-toto statement.
	Signature []byte
	Material  Material
	// Raw is the stored form it was read from, where its layout stores it
	// in one piece (a sigstore bundle): what the layout verifies.
	Raw []byte
}

// Material is what verifies a signature besides the signature itself.
type Material struct {
	// PublicKey is the key of a key-signed signature, when known.
	PublicKey crypto.PublicKey
	// Chain is a keyless signature's certificate chain, leaf first.
	Chain []*x509.Certificate
	// TlogEntries are transparency-log entries for the signature.
	TlogEntries []*protorekor.TransparencyLogEntry
	// Timestamps are RFC 3161 signed timestamps over the signature, DER.
	Timestamps [][]byte
	// EnvelopeTimestamps are RFC 3161 timestamps over a DSSE envelope
	// (Signed.Envelope), as cosign's legacy layout timestamps an
	// attestation layer; bundles timestamp the signature.
	EnvelopeTimestamps [][]byte
}

// DSSE reports whether the payload is signed in a DSSE envelope.
func (s *Signed) DSSE() bool { return s.PayloadType != PayloadSimpleSigning }

// Message returns the bytes the signature is over.
func (s *Signed) Message() []byte { return Message(s.PayloadType, s.Payload) }

// Message returns the bytes a signer signs for a payload of payloadType:
// the payload itself for simple signing, else its DSSE pre-authentication
// encoding.
func Message(payloadType string, payload []byte) []byte {
	if payloadType == PayloadSimpleSigning {
		return payload
	}
	return dsse.PAE(payloadType, payload)
}

// Envelope returns the DSSE envelope of a DSSE-signed payload, as cosign
// stores it in a legacy attestation layer.
func (s *Signed) Envelope() ([]byte, error) {
	return json.Marshal(envelope{
		PayloadType: s.PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(s.Payload),
		Signatures:  []envelopeSignature{{Sig: base64.StdEncoding.EncodeToString(s.Signature)}},
	})
}

type envelope struct {
	PayloadType string              `json:"payloadType"`
	Payload     string              `json:"payload"`
	Signatures  []envelopeSignature `json:"signatures"`
}

type envelopeSignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// ParseEnvelope reads a DSSE envelope with one signature.
func ParseEnvelope(raw []byte) (payloadType string, payload, sig []byte, err error) {
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return "", nil, nil, err
	}
	if payload, err = base64.StdEncoding.DecodeString(e.Payload); err != nil {
		return "", nil, nil, err
	}
	if len(e.Signatures) == 0 {
		return e.PayloadType, payload, nil, nil
	}
	sig, err = base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
	return e.PayloadType, payload, sig, err
}
