//go:build kyverno

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

// These tests need kyverno-verify, Kyverno v1.19.1's own image verifiers
// (test/consumers/kyverno), whose cold build is too long for `make test`:
//
//	make consumers-kyverno
//	NESTATTEST_E2E=require go test -tags kyverno -run Kyverno ./test/e2e
//
// (`make test-kyverno` does both.)

// kyvernoProvenance is the attestation type Kyverno's policies name for SLSA
// v1.0 provenance (cosign's --type slsaprovenance1).
const kyvernoProvenance = "https://slsa.dev/provenance/v1"

// kyvernoReport is kyverno-verify's output.
type kyvernoReport struct {
	Image  string
	Checks []kyvernoCheck
}

// kyvernoCheck is one verdict of one of Kyverno's verifiers.
type kyvernoCheck struct {
	Verifier, Check, Type, Digest, Error string
	Verified                             bool
}

// name is "cpol signature", "ivpol attestation".
func (c kyvernoCheck) name() string { return c.Verifier + " " + c.Check }

// needKyverno fails the test, before anything is set up, when
// kyverno-verify is missing (skips it without NESTATTEST_E2E=require), and
// logs the Kyverno it was built from.
func needKyverno(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(harness.Tools(t), "kyverno-verify")); err != nil {
		harness.Missing(t, fmt.Sprintf("kyverno-verify: %v; it is opt-in, build it with `make consumers-kyverno`", err))
	}
	harness.Consumer(t, "kyverno-verify")
}

// kyvernoVerify runs kyverno-verify on ref with args and decodes its
// verdicts; a run that printed none (bad flags, a crash) fails the test.
func kyvernoVerify(t *testing.T, ref string, args ...string) kyvernoReport {
	t.Helper()
	home := t.TempDir() // sigstore's TUF clients cache under $HOME and $TUF_ROOT
	r := harness.RunEnv(t, []string{"HOME=" + home, "TUF_ROOT=" + home}, harness.Tool(t, "kyverno-verify"),
		append([]string{"--image", ref, "--type", kyvernoProvenance, "--allow-insecure-registry"}, args...)...)
	var rep kyvernoReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || (r.Code != 0 && r.Code != 1) {
		t.Fatalf("kyverno-verify %s: exit %d, %v\n%s%s", ref, r.Code, err, r.Stdout, lastLines(r.Stderr, 5))
	}
	return rep
}

// kyvernoCase is how one identity and one format are verified by Kyverno,
// and what Kyverno v1.19.1 makes of it: want maps a check ("ivpol
// attestation") that Kyverno refuses on every node to the start of its
// error; a check not named passes on every node but the parent (see
// expected). Why each refusal: test/consumers/README.md.
type kyvernoCase struct {
	format string
	args   map[string][]string // by verifier
	want   map[string]string
}

// kyvernoChecks are the checks kyverno-verify makes of a node.
var kyvernoChecks = []string{"cpol signature", "cpol attestation", "ivpol signature", "ivpol attestation"}

// kyvernoNoTlog is how an ImageValidatingPolicy refuses every legacy
// attestation verified without a transparency log: VerifyAttestationSignature
// (pkg/image/verifiers/ivpol/cosign/verifier.go) refuses when cosign reports
// no Rekor bundle verified, without the insecureIgnoreTlog exception its
// VerifyImageSignature makes (kyverno/kyverno#17109, open; fix proposed in
// #17217). The legacy layout can hold no Rekor v2 entry, so this is every
// legacy attestation the harness can make.
const kyvernoNoTlog = "cosign bundle verification failed"

// kyvernoUnloadable is how an ImageValidatingPolicy fails on the tree's
// parent index: its image data loader (kyverno/sdk's imagedataloader)
// resolves an index to its linux/amd64 image the way go-containerregistry
// does, in the index's own repository, where the parent's children, scoped
// into other repositories, are not.
const kyvernoUnloadable = "failed to get imagedata: GET "

// expected is the error check must give for node ("" when it passes).
func (c kyvernoCase) expected(check, node, parent string) string {
	if strings.HasPrefix(check, "ivpol ") && node == parent {
		return kyvernoUnloadable
	}
	return c.want[check]
}

// checkTree runs both of Kyverno's verifiers on every node of a tree, logs
// what each check gave, and compares it with what c expects.
func (c kyvernoCase) checkTree(t *testing.T, nodes []string, parent string) {
	t.Helper()
	got := map[string]map[string]string{} // check -> node -> error, "" when verified
	for _, check := range kyvernoChecks {
		got[check] = map[string]string{}
	}
	for _, node := range nodes {
		for _, verifier := range []string{"cpol", "ivpol"} {
			rep := kyvernoVerify(t, node, append([]string{"--verifier", verifier}, c.args[verifier]...)...)
			for _, ch := range rep.Checks {
				got[ch.name()][node] = ch.Error
				if ch.Verified != (ch.Error == "") {
					t.Errorf("%s on %s: verified %v with error %q", ch.name(), node, ch.Verified, ch.Error)
				}
			}
		}
	}
	for _, check := range kyvernoChecks {
		passed := 0
		example := map[string]string{} // an instance of each refusal
		for _, node := range nodes {
			err, ran := got[check][node]
			want := c.expected(check, node, parent)
			switch {
			case !ran:
				t.Errorf("%s %s: kyverno-verify gave no verdict for %s", c.format, check, node)
			case err == "" && want == "":
				passed++
			case want == "":
				t.Errorf("%s %s refuses %s: %s", c.format, check, node, err)
			case !strings.HasPrefix(err, want):
				t.Errorf("%s %s on %s: got %q, want Kyverno v1.19.1's refusal %q", c.format, check, node, err, want)
			case example[want] == "":
				example[want] = node + ": " + err
			}
		}
		t.Logf("%s %s: %d of %d nodes pass", c.format, check, passed, len(nodes))
		for _, e := range example {
			t.Logf("%s %s: refused as Kyverno v1.19.1 refuses it: %s", c.format, check, e)
		}
	}
}

// TestKyvernoKey signs the 3-level, 5-repository tree with a key file and
// with a KMS key (local-kms), no transparency log, in each format, a
// statement a node and one for the tree (--statements), and the 100-node
// tree with one for the tree, and has Kyverno's ClusterPolicy and
// ImageValidatingPolicy verifiers check every node's signature and SLSA
// provenance attestation with the public key; another key is refused.
func TestKyvernoKey(t *testing.T) {
	needKyverno(t)
	kms := harness.StartKMS(t, harness.KMSOptions{})
	kmsPub := writeFile(t, "kms.pub", publicPEM(t, kms.PublicKey))
	for _, c := range []kyvernoCase{
		{format: "legacy", want: map[string]string{"ivpol attestation": kyvernoNoTlog}},
		{format: "bundle", args: map[string][]string{"cpol": {"--sigstore-bundle"}}},
	} {
		for _, run := range kyvernoTrees {
			for _, signer := range []string{"key", "kms"} {
				t.Run(c.format+"/"+run.name+"/"+signer, func(t *testing.T) {
					c := c // each run adds its own flags
					reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
					tag, parent := run.push(t, reg)
					k := newKeyPair(t, "cosign")
					pub, env, args := k.pub, k.env(), signArgs(k, tag, "--format", c.format, "--statements", run.statements)
					if signer == "kms" {
						pub, env = kmsPub, kms.Env()
						args = []string{"sign", "--tlog-upload=false", "--key", kms.KeyRef(), tag, "--format", c.format, "--statements", run.statements}
					}
					if r := harness.RunEnv(t, env, harness.Binary(t), args...); r.Code != 0 {
						t.Fatalf("sign --format %s: exit %d\n%s%s", c.format, r.Code, r.Stdout, r.Stderr)
					}
					key := []string{"--key", pub, "--insecure-ignore-tlog", "--insecure-ignore-sct"}
					c.args = withCommon(c.args, key)
					c.checkTree(t, treeOf(t, tag).refs(), parent)

					other := newKeyPair(t, "other")
					wrong := withCommon(c.args, nil)
					for v := range wrong {
						wrong[v] = replaceFlag(wrong[v], "--key", other.pub)
					}
					for _, verifier := range []string{"cpol", "ivpol"} {
						rep := kyvernoVerify(t, parent, append([]string{"--verifier", verifier}, wrong[verifier]...)...)
						for _, ch := range rep.Checks {
							if ch.Verified {
								t.Errorf("%s accepts %s signed by another key", ch.name(), parent)
							}
						}
					}
				})
			}
		}
	}
}

// kyvernoTrees are the trees the Kyverno tests sign: the 3-level,
// 5-repository tree with a statement a node and with one for the tree, and
// a 100-node tree over 10 repositories with one for the tree. push returns
// the tree's tag and its parent (root) by digest.
var kyvernoTrees = []struct {
	name, statements string
	push             func(t *testing.T, reg *harness.Registry) (tag, parent string)
}{
	{"statements-node", "node", pushKoTree},
	{"statements-tree", "tree", pushKoTree},
	{"100-node/statements-tree", "tree", func(t *testing.T, reg *harness.Registry) (string, string) {
		tag := pushWideTo(t, reg, "org/ko-build", 9, 10)
		return tag, treeOf(t, tag).refs()[0]
	}},
}

func pushKoTree(t *testing.T, reg *harness.Registry) (string, string) {
	tree := pushKo(t, reg, "org/ko-build")
	return tree.tag, tree.root.String()
}

// TestKyvernoKeyless signs the trees of kyvernoTrees keylessly (Fulcio,
// rekor-tiles and the TSA of the harness) in each format, and has Kyverno's verifiers check
// every node by identity, with the trust Kyverno takes: a TUF mirror (the
// controllers' --tufMirror/--tufRoot, the ImageValidatingPolicy's tuf) and
// PEM roots, Rekor key and TSA chain. The legacy layout holds no Rekor v2
// entry, so it is checked with the timestamp alone (ignoreTlog), as cosign
// is.
func TestKyvernoKeyless(t *testing.T) {
	needKyverno(t)
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	targets := s.TUFTargets(t)
	targets[harness.TUFTrustedRoot] = withCTLog(t, targets[harness.TUFTrustedRoot])
	tuf := harness.StartTUF(t, targets, time.Now().Add(24*time.Hour))
	roots, tsa := legacyTrust(t, s)
	identity := []string{"--subject", s.Identity, "--issuer", s.Issuer, "--tuf-mirror", tuf.URL, "--tuf-root", tuf.RootPath}
	for _, c := range []kyvernoCase{
		{format: "legacy", args: map[string][]string{
			"cpol":  {"--roots", roots, "--tsa-cert-chain", tsa, "--insecure-ignore-tlog", "--insecure-ignore-sct"},
			"ivpol": {"--roots", roots, "--tsa-cert-chain", tsa, "--insecure-ignore-tlog", "--insecure-ignore-sct"},
		}, want: map[string]string{"ivpol attestation": kyvernoNoTlog}},
		{format: "bundle", args: map[string][]string{
			// ClusterPolicies read bundles with sigstore-go: the trusted
			// root from TUF, the Rekor v2 entries and the TSA's timestamps
			// (ctlog.ignoreSCT false asks for one observer timestamp).
			"cpol": {"--sigstore-bundle"},
			// ImageValidatingPolicies read them with cosign v3's library:
			// the trusted root from TUF; certificates without SCT.
			"ivpol": {"--rekor-url", s.RekorURL, "--insecure-ignore-sct"},
		}},
	} {
		for _, run := range kyvernoTrees {
			t.Run(c.format+"/"+run.name, func(t *testing.T) {
				c := c // each run adds its own flags
				reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
				tag, parent := run.push(t, reg)
				if r := keylessSign(t, s, tag, c.format, "--statements", run.statements); r.Code != 0 {
					t.Fatalf("keyless sign --format %s: exit %d\n%s%s", c.format, r.Code, r.Stdout, r.Stderr)
				}
				c.args = withCommon(c.args, identity)
				c.checkTree(t, treeOf(t, tag).refs(), parent)

				wrong := withCommon(c.args, nil)
				for v := range wrong {
					wrong[v] = replaceFlag(wrong[v], "--subject", "someone@else.example")
				}
				for _, verifier := range []string{"cpol", "ivpol"} {
					rep := kyvernoVerify(t, parent, append([]string{"--verifier", verifier}, wrong[verifier]...)...)
					for _, ch := range rep.Checks {
						if ch.Verified {
							t.Errorf("%s accepts %s for another subject", ch.name(), parent)
						}
					}
				}
			})
		}
	}
}

// withCTLog is a trusted root with a CT log added, whose key signs nothing:
// the ImageValidatingPolicy verifier reads the CT logs' keys from the
// trusted root (initTUFAndFetch in pkg/image/verifiers/ivpol/cosign/opts.go)
// and fails without one ("getting CTLog public keys: no CTLog public keys
// found in trusted root") even when the attestor sets insecureIgnoreSCT.
// The harness's Fulcio logs to no CT log, so its certificates carry no SCT
// and every verifier here is told to skip SCTs: the key is never used.
func withCTLog(t *testing.T, trustedRoot []byte) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(der)
	var doc map[string]any
	if err := json.Unmarshal(trustedRoot, &doc); err != nil {
		t.Fatal(err)
	}
	doc["ctlogs"] = []any{map[string]any{
		"baseUrl":       "http://127.0.0.1:1/unused-ct-log",
		"hashAlgorithm": "SHA2_256",
		"publicKey": map[string]any{
			"rawBytes":   base64.StdEncoding.EncodeToString(der),
			"keyDetails": "PKIX_ECDSA_P256_SHA_256",
			"validFor":   map[string]any{"start": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)},
		},
		"logId": map[string]any{"keyId": base64.StdEncoding.EncodeToString(id[:])},
	}}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withCommon is args with common added to each verifier's, both verifiers
// present.
func withCommon(args map[string][]string, common []string) map[string][]string {
	out := map[string][]string{}
	for _, v := range []string{"cpol", "ivpol"} {
		out[v] = append(append([]string(nil), common...), args[v]...)
	}
	return out
}

// TestKyvernoMirroredParent: a parent composed by `nestattest catalog` on a
// registry that refuses sparse indexes, so mirrored (every node below it
// pushed into its repository too), signed with a key in the bundle format:
// both of Kyverno's verifiers accept the parent, the ImageValidatingPolicy's
// image data loader included, since the linux/amd64 image it resolves is
// now in the parent's repository.
func TestKyvernoMirroredParent(t *testing.T) {
	needKyverno(t)
	reg := harness.Distribution(t, harness.DistributionOptions{})
	parent := catalogNested(t, reg, "org/ko-build")
	rep := catalogRun(t, parent.Tag("latest").String(), "--child", "app1=:latest", "--child", "app2=:latest", "--child", "app3=:latest")
	if !rep.Mirrored {
		t.Fatalf("catalog did not mirror: %+v", rep)
	}
	root := parent.Digest(rep.Digest).String()
	k := newKeyPair(t, "cosign")
	if r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, root, "--format", "bundle")...); r.Code != 0 {
		t.Fatalf("sign --format bundle: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	c := kyvernoCase{format: "bundle", args: withCommon(map[string][]string{"cpol": {"--sigstore-bundle"}},
		[]string{"--key", k.pub, "--insecure-ignore-tlog", "--insecure-ignore-sct"})}
	c.checkTree(t, []string{root}, "")
}
