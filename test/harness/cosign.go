package harness

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// AttestedPayloads are the in-toto statements cosign verify-attestation
// printed on stdout, one envelope a line, decoded from their payloads.
func AttestedPayloads(t testing.TB, stdout string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var env struct{ Payload string }
		if json.Unmarshal([]byte(line), &env) != nil || env.Payload == "" {
			continue
		}
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, payload)
	}
	return out
}
