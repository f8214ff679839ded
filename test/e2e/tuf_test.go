package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

// tufStack is a local sigstore whose trust material a TUF repository on
// loopback serves, and the TUF cache nestattest keeps for it.
type tufStack struct {
	s     *harness.Sigstore
	repo  *harness.TUFRepository
	cache string
	// cosignHome is cosign v3's HOME, where `cosign initialize` keeps its
	// TUF cache.
	cosignHome string
}

func startTUFStack(t *testing.T) *tufStack {
	t.Helper()
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	repo := harness.StartTUF(t, s.TUFTargets(t), time.Now().Add(24*time.Hour))
	return &tufStack{s: s, repo: repo, cache: t.TempDir(), cosignHome: t.TempDir()}
}

// tuf are the flags that point nestattest at the repository: what a user
// of a private sigstore gives, and nothing else about trust.
func (k *tufStack) tuf() []string {
	return []string{"--tuf-mirror", k.repo.URL, "--tuf-root", k.repo.RootPath, "--tuf-cache", k.cache}
}

// sign signs ref keylessly with no --trusted-root, --signing-config or
// service URL. The local Fulcio has no CT log (--insecure-skip-verify).
func (k *tufStack) sign(t *testing.T, ref string) harness.Result {
	t.Helper()
	args := append([]string{"sign", "--identity-token", k.s.Token(t), "--insecure-skip-verify", "--format", "bundle"}, k.tuf()...)
	return harness.Run(t, harness.Binary(t), append(args, ref)...)
}

// verify verifies the tree at ref by identity, with no --trusted-root.
func (k *tufStack) verify(t *testing.T, ref string) (verifyDoc, harness.Result) {
	t.Helper()
	args := append([]string{"--certificate-identity", k.s.Identity, "--certificate-oidc-issuer", k.s.Issuer,
		"--insecure-ignore-sct", "--use-signed-timestamps", "--require-root", "--format", "bundle"}, k.tuf()...)
	return verifyTree(t, "", ref, args...)
}

// cosign runs cosign v3.1.3 with its own HOME, so its TUF cache
// ($HOME/.sigstore/root) is the one `cosign initialize` wrote.
func (k *tufStack) cosign(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return harness.RunEnv(t, []string{"HOME=" + k.cosignHome, "TUF_ROOT=", "COSIGN_YES=true"}, harness.Tool(t, "cosign3"), args...)
}

// cosignVerify checks every node's signature and SLSA v1 provenance with
// cosign v3 by identity, its trust material from the TUF repository.
func (k *tufStack) cosignVerify(t *testing.T, nodes []string) {
	t.Helper()
	for _, node := range nodes {
		for _, cmd := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
			r := k.cosign(t, append(cmd, "--certificate-identity", k.s.Identity, "--certificate-oidc-issuer", k.s.Issuer,
				"--insecure-ignore-sct", "--allow-insecure-registry", node)...)
			if r.Code != 0 {
				t.Errorf("cosign v3 %s %s: exit %d\n%s", cmd[0], node, r.Code, lastLines(r.Stderr, 3))
			}
		}
	}
}

// TestKeylessTUF: keyless signing and verification with the trust
// material from a sigstore TUF repository (go-tuf v2 metadata on loopback,
// its targets naming the local Fulcio, Rekor v2 log and timestamp
// authority), as a private deployment gives it with --tuf-mirror and
// --tuf-root and nothing else: the tree signed with one certificate from
// the Fulcio the repository's signing config names, every node verified
// by nestattest and by cosign v3 after `cosign initialize --mirror
// --root`. With the mirror stopped, a second run works from the cache;
// once the cached metadata has expired, the run stops, naming the mirror
// and the ways on. A Fulcio CA rotated and published as a new target is
// picked up by the next run, no flag changed.
func TestKeylessTUF(t *testing.T) {
	k := startTUFStack(t)
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tree := pushKo(t, reg, "org/ko-build")

	before := k.s.Requests()
	r := k.sign(t, tree.tag)
	if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
		t.Fatalf("keyless sign from TUF: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("sign (TUF %s): %s", k.repo.URL, lastLines(r.Stdout, 1))
	d := k.s.Requests()
	if d.Certificates-before.Certificates != 1 || d.Entries == before.Entries || d.Timestamps == before.Timestamps {
		t.Errorf("sigstore: %+v then %+v; want 1 certificate, and entries and timestamps from the services the TUF signing config names", before, d)
	}
	nodes := treeOf(t, tree.tag).refs()
	doc, vr := k.verify(t, tree.tag)
	if vr.Code != 0 || doc.Summary.Passed != 13 {
		t.Fatalf("nestattest verify from TUF: exit %d, %+v, %v\n%s", vr.Code, doc.Summary, doc.failures(), vr.Stderr)
	}
	t.Logf("nestattest verify (TUF): %d of %d nodes passed", doc.Summary.Passed, doc.Summary.Nodes)
	init := k.cosign(t, "initialize", "--mirror", k.repo.URL, "--root", k.repo.RootPath)
	if init.Code != 0 {
		t.Fatalf("cosign v3 initialize --mirror %s --root %s: exit %d\n%s%s", k.repo.URL, k.repo.RootPath, init.Code, init.Stdout, init.Stderr)
	}
	t.Logf("cosign v3.1.3 initialize --mirror %s --root %s: exit %d %s", k.repo.URL, k.repo.RootPath, init.Code, lastLines(init.Stdout+init.Stderr, 2))
	k.cosignVerify(t, nodes)
	t.Logf("cosign v3.1.3 verify and verify-attestation --type slsaprovenance1 --certificate-identity %s --certificate-oidc-issuer %s --insecure-ignore-sct: %d nodes checked (failures above)", k.s.Identity, k.s.Issuer, len(nodes))

	t.Run("mirror stopped", func(t *testing.T) {
		k.repo.Stop(t)
		defer k.repo.Start(t)
		r := k.sign(t, tree.tag)
		if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") || !strings.Contains(r.Stderr, "using the trust material cached in "+k.cache) {
			t.Errorf("second run, mirror stopped: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		t.Logf("sign, mirror stopped: %s / %s", lastLines(r.Stderr, 1), lastLines(r.Stdout, 1))
		if doc, vr := k.verify(t, tree.tag); vr.Code != 0 || doc.Summary.Passed != 13 {
			t.Errorf("verify, mirror stopped: exit %d, %+v\n%s", vr.Code, doc.Summary, vr.Stderr)
		}
	})

	t.Run("rotated CA", func(t *testing.T) {
		k.s.RotateFulcio(t)
		k.repo.Publish(t, k.s.TUFTargets(t), time.Now().Add(24*time.Hour))
		rotated := pushKo(t, reg, "org/rotated")
		before := k.s.Requests()
		r := k.sign(t, rotated.tag)
		if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
			t.Fatalf("sign after the rotation, same flags: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if c := k.s.Requests().Certificates - before.Certificates; c != 1 {
			t.Errorf("the new Fulcio issued %d certificates, want 1", c)
		}
		t.Logf("sign after the rotation (new Fulcio %s): %s", k.s.FulcioURL, lastLines(r.Stdout, 1))
		for _, ref := range []string{rotated.tag, tree.tag} {
			if doc, vr := k.verify(t, ref); vr.Code != 0 || doc.Summary.Passed != 13 {
				t.Errorf("verify %s after the rotation: exit %d, %+v, %v", ref, vr.Code, doc.Summary, doc.failures())
			}
		}
		k.cosignVerify(t, treeOf(t, rotated.tag).refs())
	})

	t.Run("cache expired", func(t *testing.T) {
		// Metadata that expires in 15 seconds, read once from the mirror;
		// then the mirror stops and the metadata expires.
		expires := time.Now().Add(15 * time.Second).UTC().Truncate(time.Second)
		k.repo.Publish(t, k.s.TUFTargets(t), expires)
		if doc, vr := k.verify(t, tree.tag); vr.Code != 0 || doc.Summary.Passed != 13 {
			t.Fatalf("verify with the short-lived metadata: exit %d, %+v\n%s", vr.Code, doc.Summary, vr.Stderr)
		}
		k.repo.Stop(t)
		time.Sleep(time.Until(expires.Add(time.Second)))
		for _, cmd := range [][]string{{"sign", "--identity-token", k.s.Token(t), "--insecure-skip-verify"},
			{"verify", "--certificate-identity", k.s.Identity, "--certificate-oidc-issuer", k.s.Issuer}} {
			r := harness.Run(t, harness.Binary(t), append(append(cmd, k.tuf()...), tree.tag)...)
			for _, want := range []string{k.repo.URL + " could not be read", "expired at " + expires.Format(time.RFC3339), "--tuf-mirror URL", "--trusted-root FILE"} {
				if r.Code != 2 || !strings.Contains(r.Stderr, want) {
					t.Errorf("%s, cache expired: exit %d, want 2 and %q\n%s", cmd[0], r.Code, want, r.Stderr)
				}
			}
			t.Logf("%s, mirror stopped, cache expired: exit %d: %s", cmd[0], r.Code, lastLines(r.Stderr, 1))
		}
		if entries, _ := filepath.Glob(filepath.Join(k.cache, "*", "timestamp.json")); len(entries) != 1 {
			t.Errorf("cache %s holds %v, want one mirror's metadata", k.cache, entries)
		}
	})
}

// TestActionKeylessFromTUF runs action.yml's steps as a job with
// `permissions: id-token: write` would: no key and no trust input, only
// tuf-mirror and tuf-root naming the local sigstore's TUF repository (the
// public-good repository needs neither). The job's OIDC token comes from
// ACTIONS_ID_TOKEN_REQUEST_URL; the TUF cache is the default one under
// $XDG_CACHE_HOME. Every node is then verified by identity with nestattest
// and cosign v3, their trust material from the same repository.
func TestActionKeylessFromTUF(t *testing.T) {
	k := startTUFStack(t)
	reg := harness.Distribution(t, harness.DistributionOptions{})
	ko := catalogKo(t, reg, "org/ko-build", "app1", "app2", "app3")
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("audience") != "sigstore" || r.Header.Get("Authorization") != "bearer request-token" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"value": k.s.Token(t)})
	}))
	t.Cleanup(tokens.Close)
	// The binary under test, behind a wrapper that adds
	// --insecure-skip-verify to sign: the local Fulcio has no CT log, and
	// the action has no input for a flag only tests need.
	wrapper := filepath.Join(t.TempDir(), "nestattest")
	script := "#!/bin/bash\nif [ \"$1\" = sign ]; then shift; exec " + harness.Binary(t) + " sign --insecure-skip-verify \"$@\"; fi\nexec " + harness.Binary(t) + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cacheHome := t.TempDir()
	a := shipLoadAction(t)
	r := &shipRunner{
		inputs:  map[string]string{},
		github:  map[string]string{"action_path": shipRoot(t), "action_ref": "v0.0.0-action-test"},
		outputs: map[string]map[string]string{},
		temp:    t.TempDir(),
		summary: filepath.Join(t.TempDir(), "summary.md"),
		env: []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + tokens.URL + "/token?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=request-token",
			"SIGSTORE_ID_TOKEN=", "XDG_CACHE_HOME=" + cacheHome},
	}
	for name, in := range a.Inputs {
		r.inputs[name] = in.Default
	}
	for name, v := range map[string]string{"reference": ko.Tag, "from": ko.RefsFile, "format": "bundle",
		"tuf-mirror": k.repo.URL, "tuf-root": k.repo.RootPath, "nestattest-path": wrapper} {
		r.inputs[name] = v
	}
	before := k.s.Requests()
	last := r.run(t, a)
	t.Logf("action, keyless from TUF: %s", lastLines(last.Stdout, 1))
	if got := r.outputs["sign"]; got["nodes"] != "10" || got["written"] != "10" || got["failed"] != "0" {
		t.Errorf("outputs %v, want 10 nodes written, none failed", got)
	}
	if c := k.s.Requests().Certificates - before.Certificates; c != 1 {
		t.Errorf("%d certificates, want 1", c)
	}
	if cached, _ := filepath.Glob(filepath.Join(cacheHome, "nestattest", "tuf", "*", "timestamp.json")); len(cached) != 1 {
		t.Errorf("the TUF metadata is not cached under $XDG_CACHE_HOME/nestattest/tuf: %v", cached)
	}
	root := treeOf(t, ko.Tag).Nodes[0]
	doc, vr := k.verify(t, ko.Tag)
	if vr.Code != 0 || doc.Summary.Passed != 10 {
		t.Errorf("nestattest verify: exit %d, %+v, %v", vr.Code, doc.Summary, doc.failures())
	}
	if init := k.cosign(t, "initialize", "--mirror", k.repo.URL, "--root", k.repo.RootPath); init.Code != 0 {
		t.Fatalf("cosign v3 initialize: exit %d\n%s", init.Code, init.Stderr)
	}
	k.cosignVerify(t, []string{ko.Parent.Name() + "@" + root.Digest, ko.Refs[0]})
}
