package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/test/harness"
)

// evidenceRun is one run of nestattest sign: its output and its JSON
// report.
type evidenceRun struct {
	harness.Result
	Nodes []struct {
		Path, Repository, Digest string
		Places                   []struct{ Repository, Layout, Signature, Attestation string }
	}
}

// evidenceSign runs nestattest sign with args and reads its report.
func evidenceSign(t *testing.T, env []string, args ...string) evidenceRun {
	t.Helper()
	report := filepath.Join(t.TempDir(), "report.json")
	var run evidenceRun
	run.Result = harness.RunEnv(t, env, harness.Binary(t), append(append([]string{"sign"}, args...), "--report", report)...)
	if run.Code != 0 {
		t.Fatalf("sign %s: exit %d\n%s%s", strings.Join(shown(args), " "), run.Code, run.Stdout, run.Stderr)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &run); err != nil {
		t.Fatalf("the report: %v\n%s", err, raw)
	}
	t.Logf("sign %s:\n%s", strings.Join(shown(args), " "), strings.TrimSpace(run.Stdout))
	return run
}

// shown is args with the identity token's value left out, for logs.
func shown(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out[:len(out)-1] {
		if out[i] == "--identity-token" {
			out[i+1] = "TOKEN"
		}
	}
	return out
}

// written fails the test unless the run wrote a signature and an
// attestation in layout in every place of every node.
func (r evidenceRun) written(t *testing.T, layout string, nodes int) {
	t.Helper()
	if len(r.Nodes) != nodes {
		t.Errorf("the report holds %d nodes, want %d", len(r.Nodes), nodes)
	}
	for _, n := range r.Nodes {
		seen := false
		for _, p := range n.Places {
			if p.Layout != layout {
				continue
			}
			seen = true
			if p.Signature != "written" || p.Attestation != "written" {
				t.Errorf("%s@%s in %s (%s): signature %s, attestation %s; want both written with the evidence", n.Repository, n.Digest, p.Repository, layout, p.Signature, p.Attestation)
			}
		}
		if !seen {
			t.Errorf("%s@%s: nothing in the %s layout", n.Repository, n.Digest, layout)
		}
	}
}

// verifyAll runs nestattest verify on the tree at ref with args, logging
// its reasons and summary, and checks that every node passes (pass) or
// that every node fails.
func verifyAll(t *testing.T, pass bool, when, ref string, args ...string) {
	t.Helper()
	r := harness.Run(t, harness.Binary(t), append([]string{"verify", ref}, args...)...)
	t.Logf("%s: verify %s: exit %d\n%s", when, strings.Join(args, " "), r.Code, lastLines(r.Stdout, 3))
	summary := lastLine(r.Stdout)
	switch {
	case pass && (r.Code != 0 || !strings.HasPrefix(summary, "verified: 13 of 13 nodes")):
		t.Errorf("%s: exit %d, %q; want every node passing", when, r.Code, summary)
	case !pass && (r.Code != 1 || !strings.HasPrefix(summary, "FAILED: 0 of 13 nodes")):
		t.Errorf("%s: exit %d, %q; want every node failing", when, r.Code, summary)
	}
}

// signingConfigWithout writes a copy of the stack's signing config without
// the services named by keys (tsaUrls, rekorTlogUrls…).
func signingConfigWithout(t *testing.T, s *harness.Sigstore, keys ...string) string {
	t.Helper()
	raw, err := os.ReadFile(s.SigningConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var sc map[string]any
	if err := json.Unmarshal(raw, &sc); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, ok := sc[k]; !ok {
			t.Fatalf("the signing config has no %s:\n%s", k, raw)
		}
		delete(sc, k)
		delete(sc, strings.TrimSuffix(k, "Urls")+"Config")
	}
	out, _ := json.Marshal(sc)
	return writeFile(t, "signing_config.json", string(out))
}

// TestRerunAddsEvidence: a tree signed without a timestamp authority (or
// a transparency log), signed again with one, gets the evidence on every
// node — verify requiring it fails before and passes after — and a third
// run writes nothing; cosign v2.6.5 and v3.1.3 verify every node with the
// evidence required. Against the real timestamp authority v2.1.3 and
// rekor-tiles v2.2.1: with a key and a timestamp authority, with a key and
// a transparency log (bundles: the legacy layout keeps no Rekor v2 entry,
// so there a log adds nothing and the run writes nothing), and keyless
// with a timestamp authority.
func TestRerunAddsEvidence(t *testing.T) {
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	tsa := s.TSAURL + "/api/v1/timestamp"
	_, tsaChain := legacyTrust(t, s)
	const nodes = 13

	t.Run("key then timestamp authority", func(t *testing.T) {
		for _, format := range []string{"legacy", "bundle"} {
			t.Run(format, func(t *testing.T) {
				reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
				tree := pushKo(t, reg, "org/ko-build")
				k := newKeyPair(t, "cosign")
				base := []string{"--key", k.key, "--tlog-upload=false", "--format", format, tree.tag}
				require := []string{"--key", k.pub, "--insecure-ignore-tlog", "--trusted-root", s.TrustedRootPath, "--use-signed-timestamps", "--require-root", "--format", format}

				evidenceSign(t, k.env(), base...).written(t, format, nodes)
				verifyAll(t, false, "before the re-run, verify with timestamps required", tree.tag, require...)
				before := s.Requests()
				second := evidenceSign(t, k.env(), append(base, "--timestamp-server-url", tsa, "--trusted-root", s.TrustedRootPath)...)
				second.written(t, format, nodes)
				if !strings.Contains(second.Stdout, "13 written, 0 present") || s.Requests().Timestamps == before.Timestamps {
					t.Errorf("the re-run with a timestamp authority: %s; %d timestamps", lastLine(second.Stdout), s.Requests().Timestamps-before.Timestamps)
				}
				verifyAll(t, true, "after the re-run, verify with timestamps required", tree.tag, require...)
				before = s.Requests()
				third := evidenceSign(t, k.env(), append(base, "--timestamp-server-url", tsa, "--trusted-root", s.TrustedRootPath)...)
				if !strings.Contains(third.Stdout, "nothing to write") || s.Requests().Timestamps != before.Timestamps {
					t.Errorf("the third run: %s; %d timestamps", lastLine(third.Stdout), s.Requests().Timestamps-before.Timestamps)
				}
				for _, node := range treeOf(t, tree.tag).refs() {
					cosignVerifyEvidence(t, format, node, []string{"--key", k.pub, "--insecure-ignore-tlog", "--use-signed-timestamps"},
						[]string{"--timestamp-certificate-chain", tsaChain}, []string{"--trusted-root", s.TrustedRootPath})
				}
			})
		}
	})

	t.Run("key then transparency log", func(t *testing.T) {
		reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
		tree := pushKo(t, reg, "org/ko-build")
		k := newKeyPair(t, "cosign")
		logOnly := signingConfigWithout(t, s, "tsaUrls")
		base := []string{"--key", k.key, "--format", "both", tree.tag}
		require := []string{"--key", k.pub, "--trusted-root", s.TrustedRootPath, "--require-root", "--format", "bundle"}

		evidenceSign(t, k.env(), append(base, "--tlog-upload=false")...).written(t, "bundle", nodes)
		verifyAll(t, false, "before the re-run, verify with the transparency log checked", tree.tag, require...)
		before := s.Requests()
		second := evidenceSign(t, k.env(), append(base, "--signing-config", logOnly, "--trusted-root", s.TrustedRootPath)...)
		second.written(t, "bundle", nodes)
		for _, n := range second.Nodes {
			for _, p := range n.Places {
				if p.Layout == "legacy" && (p.Signature != "present" || p.Attestation != "present") {
					t.Errorf("%s@%s in %s: legacy %s/%s; the legacy layout keeps no Rekor v2 entry, so nothing is missing there", n.Repository, n.Digest, p.Repository, p.Signature, p.Attestation)
				}
			}
		}
		if got := s.Requests(); got.Entries == before.Entries || got.Timestamps != before.Timestamps {
			t.Errorf("the re-run with a transparency log: %d entries, %d timestamps", got.Entries-before.Entries, got.Timestamps-before.Timestamps)
		}
		verifyAll(t, true, "after the re-run, verify with the transparency log checked", tree.tag, require...)
		before = s.Requests()
		third := evidenceSign(t, k.env(), append(base, "--signing-config", logOnly, "--trusted-root", s.TrustedRootPath)...)
		if !strings.Contains(third.Stdout, "nothing to write") || s.Requests().Entries != before.Entries {
			t.Errorf("the third run: %s; %d entries", lastLine(third.Stdout), s.Requests().Entries-before.Entries)
		}
		for _, node := range treeOf(t, tree.tag).refs() {
			cosignVerifyEvidence(t, "bundle", node, []string{"--key", k.pub}, nil, []string{"--trusted-root", s.TrustedRootPath})
		}
	})

	t.Run("keyless then timestamp authority", func(t *testing.T) {
		noTSA := signingConfigWithout(t, s, "tsaUrls")
		for _, format := range []string{"legacy", "bundle"} {
			t.Run(format, func(t *testing.T) {
				reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
				tree := pushKo(t, reg, "org/ko-build")
				require := append(identityFlags(s), "--require-root", "--format", format)
				if format == "legacy" {
					require = append(require, "--insecure-ignore-tlog")
				}
				keyless := func(config string) []string {
					return []string{"--identity-token", s.Token(t), "--signing-config", config, "--trusted-root", s.TrustedRootPath,
						"--insecure-skip-verify", "--format", format, tree.tag}
				}

				evidenceSign(t, nil, keyless(noTSA)...).written(t, format, nodes)
				verifyAll(t, false, "before the re-run, verify with timestamps required", tree.tag, require...)
				before := s.Requests()
				second := evidenceSign(t, nil, keyless(s.SigningConfigPath)...)
				second.written(t, format, nodes)
				if s.Requests().Timestamps == before.Timestamps {
					t.Errorf("the re-run with a timestamp authority timestamped nothing: %s", lastLine(second.Stdout))
				}
				verifyAll(t, true, "after the re-run, verify with timestamps required", tree.tag, require...)
				before = s.Requests()
				third := evidenceSign(t, nil, keyless(s.SigningConfigPath)...)
				if got := s.Requests(); !strings.Contains(third.Stdout, "nothing to write") || got.Timestamps != before.Timestamps || got.Entries != before.Entries {
					t.Errorf("the third run: %s; %+v then %+v", lastLine(third.Stdout), before, got)
				}
				for _, node := range treeOf(t, tree.tag).refs() {
					cosignVerifyKeyless(t, s, node, format)
				}
			})
		}
	})
}

// cosignVerifyEvidence checks a key-signed node with cosign v2.6.5 and
// v3.1.3, verify and verify-attestation, with common flags; cosign v3
// takes trust as well, and so does cosign v2 for bundles (with
// --new-bundle-format), where for the legacy layout it takes legacy (the
// timestamp authority's chain as PEM) instead.
func cosignVerifyEvidence(t *testing.T, format, ref string, common, legacy, trust []string) {
	t.Helper()
	common = append(append([]string(nil), common...), "--allow-insecure-registry")
	v3 := append(append([]string(nil), common...), trust...)
	v2 := append(append([]string(nil), common...), legacy...)
	if format == "bundle" {
		v2 = append([]string{"--new-bundle-format"}, v3...)
	}
	for _, run := range []struct {
		name string
		cmd  func(t *testing.T, env []string, args ...string) harness.Result
		args []string
	}{{"cosign v2.6.5", cosign, v2}, {"cosign v3.1.3", cosign3, v3}} {
		for _, verb := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
			if r := run.cmd(t, nil, append(append(verb, run.args...), ref)...); r.Code != 0 {
				t.Errorf("%s %s %s (%s): exit %d\n%s", run.name, verb[0], ref, format, r.Code, lastLines(r.Stderr, 3))
			}
		}
	}
}
