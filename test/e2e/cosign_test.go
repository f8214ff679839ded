package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/test/harness"
)

// keyPair is a cosign key pair made by `nestattest generate-key-pair`.
type keyPair struct {
	dir, key, pub, password string
}

func newKeyPair(t *testing.T, prefix string) keyPair {
	t.Helper()
	dir := t.TempDir()
	k := keyPair{dir: dir, key: filepath.Join(dir, prefix+".key"), pub: filepath.Join(dir, prefix+".pub"), password: "pw-" + prefix}
	r := harness.RunEnv(t, []string{"COSIGN_PASSWORD=" + k.password}, harness.Binary(t), "generate-key-pair", "--output-key-prefix", filepath.Join(dir, prefix))
	if r.Code != 0 {
		t.Fatalf("generate-key-pair: %d %s", r.Code, r.Stderr)
	}
	return k
}

// env is the environment that unlocks the key.
func (k keyPair) env() []string { return []string{"COSIGN_PASSWORD=" + k.password} }

// cosign runs the real cosign CLI.
func cosign(t *testing.T, env []string, args ...string) harness.Result {
	t.Helper()
	return harness.RunEnv(t, append(env, "COSIGN_YES=true", "TUF_ROOT="+t.TempDir()), harness.Tool(t, "cosign"), args...)
}

// cosignVerify runs cosign verify and verify-attestation for ref, tlog off,
// and returns the docker-reference of every signature payload cosign
// accepted.
func cosignVerify(t *testing.T, pub, ref string, types ...string) []string {
	t.Helper()
	r := cosign(t, nil, "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-insecure-registry", ref)
	if r.Code != 0 {
		t.Errorf("cosign verify %s: exit %d\n%s", ref, r.Code, r.Stderr)
		return nil
	}
	if len(types) == 0 {
		types = []string{"slsaprovenance1"}
	}
	for _, typ := range types {
		a := cosign(t, nil, "verify-attestation", "--key", pub, "--type", typ, "--insecure-ignore-tlog", "--allow-insecure-registry", ref)
		if a.Code != 0 {
			t.Errorf("cosign verify-attestation --type %s %s: exit %d\n%s", typ, ref, a.Code, a.Stderr)
		}
	}
	var payloads []struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
		} `json:"critical"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.Stdout)), &payloads); err != nil {
		t.Errorf("cosign verify output: %v\n%s", err, r.Stdout)
	}
	var refs []string
	for _, p := range payloads {
		refs = append(refs, p.Critical.Identity.DockerReference)
	}
	return refs
}

// cosignVerifyEach checks every ref as cosignVerify does, in one cosign
// verify and one verify-attestation per type (cosign takes several images
// and fails when one of them fails), not a cosign process per node. When
// one fails, each ref is checked again on its own, to name the nodes that
// fail.
func cosignVerifyEach(t *testing.T, pub string, refs []string, types ...string) {
	t.Helper()
	if len(types) == 0 {
		types = []string{"slsaprovenance1"}
	}
	common := []string{"--key", pub, "--insecure-ignore-tlog", "--allow-insecure-registry"}
	var failed []string
	if r := cosign(t, nil, append(append([]string{"verify"}, common...), refs...)...); r.Code != 0 {
		failed = append(failed, "verify: "+lastLines(r.Stderr, 3))
	}
	for _, typ := range types {
		if r := cosign(t, nil, append(append([]string{"verify-attestation", "--type", typ}, common...), refs...)...); r.Code != 0 {
			failed = append(failed, "verify-attestation --type "+typ+": "+lastLines(r.Stderr, 3))
		}
	}
	if len(failed) == 0 {
		return
	}
	before := t.Failed()
	for _, ref := range refs {
		cosignVerify(t, pub, ref, types...)
	}
	if !before && !t.Failed() {
		t.Errorf("cosign failed on the %d nodes together but on none alone:\n%s", len(refs), strings.Join(failed, "\n"))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// cosignSignTree signs and attests every node with the cosign CLI, as a
// user without nestattest would.
func cosignSignTree(t *testing.T, k keyPair, refs []string, predicate string) {
	t.Helper()
	for _, ref := range refs {
		if r := cosign(t, k.env(), "sign", "--key", k.key, "--tlog-upload=false", "--allow-insecure-registry", ref); r.Code != 0 {
			t.Fatalf("cosign sign %s: %d\n%s", ref, r.Code, r.Stderr)
		}
		if r := cosign(t, k.env(), "attest", "--key", k.key, "--tlog-upload=false", "--allow-insecure-registry",
			"--type", "slsaprovenance1", "--predicate", predicate, ref); r.Code != 0 {
			t.Fatalf("cosign attest %s: %d\n%s", ref, r.Code, r.Stderr)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const slsaPredicate = `{"buildDefinition":{"buildType":"https://example.test/build","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.test/builder"}}}`
