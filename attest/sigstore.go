package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/nestattest/nestattest/attest/statement"
)

// MediaTypeBundle is the sigstore bundle v0.3 media type.
const MediaTypeBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"

// ErrNotBundle marks bytes that are not a sigstore bundle of a DSSE
// envelope.
var ErrNotBundle = errors.New("not a sigstore bundle")

// Bundle returns the sigstore bundle v0.3 of a DSSE-signed payload, with
// the key hint or the signing certificate, the transparency-log entries and
// the timestamps.
func Bundle(s *Signed, hint string) ([]byte, error) {
	if !s.DSSE() {
		return nil, fmt.Errorf("a bundle holds DSSE envelopes here, not %s payloads", s.PayloadType)
	}
	b, err := ProtoBundle(s, hint)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(b)
}

// ParseBundle reads a sigstore bundle of a DSSE envelope as a Signed of
// sub, its raw bytes kept in Signed.Raw. Bytes that are not such a bundle
// are refused with ErrNotBundle.
func ParseBundle(sub Subject, raw []byte) (*Signed, error) {
	var b protobundle.Bundle
	if err := protojson.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotBundle, err)
	}
	env := b.GetDsseEnvelope()
	if env == nil || len(env.GetSignatures()) == 0 {
		return nil, fmt.Errorf("%w: no DSSE envelope", ErrNotBundle)
	}
	s := &Signed{Subject: sub, PayloadType: env.GetPayloadType(), Payload: env.GetPayload(), Signature: env.GetSignatures()[0].GetSig()}
	st, err := statement.Read(s.Payload)
	if err != nil {
		return nil, fmt.Errorf("the bundle's statement: %w", err)
	}
	s.Kind = KindOf(st.PredicateType)
	s.Raw = raw
	m, err := bundleMaterial(b.GetVerificationMaterial())
	s.Material = m
	return s, err
}

func bundleMaterial(vm *protobundle.VerificationMaterial) (Material, error) {
	var m Material
	var ders [][]byte
	if c := vm.GetCertificate(); c != nil {
		ders = append(ders, c.GetRawBytes())
	}
	for _, c := range vm.GetX509CertificateChain().GetCertificates() {
		ders = append(ders, c.GetRawBytes())
	}
	for _, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return m, fmt.Errorf("certificate: %w", err)
		}
		m.Chain = append(m.Chain, cert)
	}
	m.TlogEntries = vm.GetTlogEntries()
	for _, t := range vm.GetTimestampVerificationData().GetRfc3161Timestamps() {
		m.Timestamps = append(m.Timestamps, t.GetSignedTimestamp())
	}
	return m, nil
}

// ProtoBundle is the sigstore bundle v0.3 of a signed payload, as
// sigstore-go takes it: a DSSE envelope, or for simple signing a message
// signature over the payload's digest, with the key hint or the
// certificate, the transparency-log entries and the timestamps.
func ProtoBundle(s *Signed, hint string) (*protobundle.Bundle, error) {
	vm := &protobundle.VerificationMaterial{TlogEntries: s.Material.TlogEntries}
	if len(s.Material.Chain) > 0 {
		vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: s.Material.Chain[0].Raw}}
	} else {
		vm.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint}}
	}
	if len(s.Material.Timestamps) > 0 {
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, t := range s.Material.Timestamps {
			vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
		}
	}
	b := &protobundle.Bundle{MediaType: MediaTypeBundle, VerificationMaterial: vm}
	if s.DSSE() {
		b.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: s.Payload, PayloadType: s.PayloadType, Signatures: []*protodsse.Signature{{Sig: s.Signature}},
		}}
		return b, nil
	}
	sum := sha256.Sum256(s.Payload)
	b.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
		MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
		Signature:     s.Signature,
	}}
	return b, nil
}

// KindOf tells a signing statement from an attestation by predicate
// type: a statement of statement.statement.PredicateCosignSign is a signature.
func KindOf(predicateType string) Kind {
	if predicateType == statement.PredicateCosignSign {
		return KindSignature
	}
	return KindAttestation
}
