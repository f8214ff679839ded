package attest

import (
	"encoding/base64"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nestattest/nestattest/attest/statement"
)

// FuzzEnvelope: whatever a registry serves as an attestation layer, reading
// it never panics, and a statement's digest is stable, so the re-run check
// cannot flap.
func FuzzEnvelope(f *testing.F) {
	stmt := `{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1",` +
		`"subject":[{"name":"reg.example/org/a","digest":{"sha256":"00"}}],` +
		`"predicate":{"runDetails":{"metadata":{"startedOn":"2026-01-01T00:00:00Z"}}}}`
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(stmt)) + `","signatures":[]}`))
	f.Add([]byte(`{"payload":"not base64"}`))
	f.Add([]byte(`{"payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"predicate":[1,2]}`)) + `"}`))
	f.Add([]byte(`{"payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"predicate":{"runDetails":"x"}}`)) + `"}`))
	f.Fuzz(func(t *testing.T, env []byte) {
		_, payload, _, err := ParseEnvelope(env)
		if err != nil {
			return
		}
		_, _ = statement.Read(payload)
		a, errA := statement.StatementDigest(payload)
		b, errB := statement.StatementDigest(payload)
		if (errA == nil) != (errB == nil) || a != b {
			t.Fatalf("StatementDigest(%q) is not stable: %v %v / %v %v", payload, a, errA, b, errB)
		}
	})
}

// FuzzBundle: whatever a registry serves as a sigstore bundle, reading it
// never panics, and what it yields can be written back.
func FuzzBundle(f *testing.F) {
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"x"}},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AA=="}]}}`))
	f.Add([]byte(`{"dsseEnvelope":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		sub := Subject{Descriptor: v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: "00"}}}
		s, err := ParseBundle(sub, raw)
		if err != nil {
			return
		}
		if _, err := Bundle(s, "hint"); err != nil && s.DSSE() {
			t.Fatalf("a bundle read cannot be written back: %v", err)
		}
	})
}
