package attest

import (
	"encoding/base64"
	"testing"
)

// FuzzEnvelope: whatever a registry serves as an attestation layer, reading
// its statement never panics; a statement is always the same as itself,
// and normalizing is stable, so the idempotence check cannot flap.
func FuzzEnvelope(f *testing.F) {
	stmt := `{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1",` +
		`"subject":[{"name":"reg.example/org/a","digest":{"sha256":"00"}}],` +
		`"predicate":{"runDetails":{"metadata":{"startedOn":"2026-01-01T00:00:00Z"}}}}`
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(stmt)) + `","signatures":[]}`))
	f.Add([]byte(`{"payload":"not base64"}`))
	f.Add([]byte(`{"payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"predicate":[1,2]}`)) + `"}`))
	f.Add([]byte(`{"payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"predicate":{"runDetails":"x"}}`)) + `"}`))
	f.Fuzz(func(t *testing.T, env []byte) {
		_, _ = envelopePredicateType(env)
		raw, err := envelopePayload(env)
		if err != nil {
			return
		}
		once, err := normalize(raw)
		if err != nil {
			if sameStatement(raw, raw) {
				t.Fatalf("%q: not a statement, yet the same as itself", raw)
			}
			return
		}
		if !sameStatement(raw, raw) {
			t.Fatalf("%q is not the same as itself", raw)
		}
		twice, err := normalize(once)
		if err != nil || string(twice) != string(once) {
			t.Fatalf("normalizing %q is not stable: %q then %q (%v)", raw, once, twice, err)
		}
	})
}
