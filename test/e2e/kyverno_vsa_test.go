//go:build kyverno

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nestattest/nestattest/test/harness"
)

// kyvernoVSAPolicy is the part of docs/policy/vsa/kyverno-clusterpolicy.yaml
// this test reads: the verifyImages rule's attestation, its attestor's key
// and transparency-log settings, and its conditions.
type kyvernoVSAPolicy struct {
	Spec struct {
		Rules []struct {
			VerifyImages []struct {
				Type         string
				Attestations []struct {
					Type      string
					Attestors []struct {
						Entries []struct {
							Keys struct {
								PublicKeys string `json:"publicKeys"`
								Rekor      struct {
									IgnoreTlog bool `json:"ignoreTlog"`
								}
								Ctlog struct {
									IgnoreSCT bool `json:"ignoreSCT"`
								}
							}
						}
					}
					Conditions []struct {
						All []struct{ Key, Operator, Value string }
					}
				}
			} `json:"verifyImages"`
		}
	}
}

// conditionKey is a condition's key, "{{ a.b.c }}".
var conditionKey = regexp.MustCompile(`^\{\{\s*([a-zA-Z0-9_.]+)\s*\}\}$`)

// TestKyvernoVSA signs the ko-shaped tree with --vsa-key, then runs Kyverno
// v1.19.1's ClusterPolicy verifyImages code (kyverno-verify) with the
// attestation type, key, transparency-log and CT log settings of
// docs/policy/vsa/kyverno-clusterpolicy.yaml on every node: each node's
// summary verifies with the summary key, and the rule's conditions hold
// on it, the policy digest the one sign printed. Another key's summaries
// are refused, and a condition naming another policy digest fails.
func TestKyvernoVSA(t *testing.T) {
	needKyverno(t)
	raw, err := os.ReadFile(filepath.Join(shipRoot(t), "docs", "policy", "vsa", "kyverno-clusterpolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pol kyvernoVSAPolicy
	if err := yaml.Unmarshal(raw, &pol); err != nil || len(pol.Spec.Rules) != 1 || len(pol.Spec.Rules[0].VerifyImages) != 1 {
		t.Fatalf("the policy: %v", err)
	}
	vi := pol.Spec.Rules[0].VerifyImages[0]
	if vi.Type != "Cosign" || len(vi.Attestations) != 1 || len(vi.Attestations[0].Attestors) != 1 || len(vi.Attestations[0].Attestors[0].Entries) != 1 {
		t.Fatalf("the policy's verifyImages: %+v", vi)
	}
	att := vi.Attestations[0]
	entry := att.Attestors[0].Entries[0].Keys
	if att.Type != "https://slsa.dev/verification_summary/v1" || strings.TrimSpace(entry.PublicKeys) != "VSA_PUBLIC_KEY" {
		t.Fatalf("the policy's attestation: type %q, key %q", att.Type, entry.PublicKeys)
	}

	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tag, _ := pushKoTree(t, reg)
	k, vsa := newKeyPair(t, "cosign"), newKeyPair(t, "cosign")
	r := harness.RunEnv(t, k.env(), harness.Binary(t), signArgs(k, tag, "--vsa-key", vsa.key)...)
	digest := regexp.MustCompile(`policy (sha256:[0-9a-f]{64})`).FindStringSubmatch(r.Stderr)
	if r.Code != 0 || digest == nil {
		t.Fatalf("sign --vsa-key: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	policyDigest := strings.TrimPrefix(digest[1], "sha256:")
	args := []string{"--verifier", "cpol", "--type", att.Type}
	if entry.Rekor.IgnoreTlog {
		args = append(args, "--insecure-ignore-tlog")
	}
	if entry.Ctlog.IgnoreSCT {
		args = append(args, "--insecure-ignore-sct")
	}
	nodes := treeOf(t, tag).refs()
	verified := 0
	for _, node := range nodes {
		rep := kyvernoVerify(t, node, append(args, "--key", vsa.pub)...)
		for _, ch := range rep.Checks {
			switch {
			case ch.Check != "attestation":
			case ch.Verified:
				verified++
			default:
				t.Errorf("%s on %s: %s", ch.name(), node, ch.Error)
			}
		}
		// The conditions, on the summary cosign returns.
		a := cosign(t, nil, "verify-attestation", "--key", vsa.pub, "--type", att.Type, "--insecure-ignore-tlog", "--allow-insecure-registry", node)
		payloads := harness.AttestedPayloads(t, a.Stdout)
		if a.Code != 0 || len(payloads) == 0 {
			t.Fatalf("cosign verify-attestation %s: exit %d\n%s", node, a.Code, a.Stderr)
		}
		var st struct{ Predicate map[string]any }
		if err := json.Unmarshal(payloads[0], &st); err != nil {
			t.Fatal(err)
		}
		if failed := kyvernoConditions(t, att.Conditions, st.Predicate, policyDigest); failed != "" {
			t.Errorf("%s: condition %s does not hold", node, failed)
		}
		if failed := kyvernoConditions(t, att.Conditions, st.Predicate, strings.Repeat("0", 64)); failed == "" {
			t.Errorf("%s: the conditions hold for another policy digest", node)
		}
	}
	if verified != len(nodes) {
		t.Errorf("cpol attestation verified on %d of %d nodes", verified, len(nodes))
	}
	t.Logf("Kyverno v1.19.1 verifyImages (ClusterPolicy) with %s's attestation: the summary of %d of %d nodes verified by the summary key; its conditions hold (verificationResult PASSED, policy.digest.sha256 %s)",
		"docs/policy/vsa/kyverno-clusterpolicy.yaml", verified, len(nodes), policyDigest)

	other := newKeyPair(t, "other")
	rep := kyvernoVerify(t, nodes[1], append(args, "--key", other.pub)...)
	refused := 0
	for _, ch := range rep.Checks {
		switch {
		case ch.Check != "attestation":
		case ch.Verified:
			t.Errorf("%s accepts %s's summary by another key", ch.name(), nodes[1])
		default:
			refused++
			t.Logf("another key: %s refuses %s: %s", ch.name(), nodes[1], ch.Error)
		}
	}
	if refused == 0 {
		t.Errorf("no attestation check ran with another key: %+v", rep.Checks)
	}
}

// kyvernoConditions evaluates the policy's Equals conditions on a summary's
// predicate, POLICY_DIGEST standing for digest, and returns the first that
// fails ("" when all hold).
func kyvernoConditions(t *testing.T, conds []struct {
	All []struct{ Key, Operator, Value string }
}, predicate map[string]any, digest string) string {
	t.Helper()
	for _, c := range conds {
		for _, cond := range c.All {
			m := conditionKey.FindStringSubmatch(cond.Key)
			if m == nil || cond.Operator != "Equals" {
				t.Fatalf("condition %+v: this test evaluates {{ path }} Equals value only", cond)
			}
			var v any = predicate
			for _, k := range strings.Split(m[1], ".") {
				obj, _ := v.(map[string]any)
				v = obj[k]
			}
			want := strings.ReplaceAll(cond.Value, "POLICY_DIGEST", digest)
			if got, _ := v.(string); got != want {
				return cond.Key + " " + cond.Operator + " " + want
			}
		}
	}
	return ""
}
