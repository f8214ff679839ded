package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/test/harness"
)

// keylessSign signs tree keylessly against the local sigstore stack (real
// Fulcio, rekor-tiles and timestamp authority) in format.
func keylessSign(t *testing.T, s *harness.Sigstore, ref, format string, extra ...string) harness.Result {
	t.Helper()
	args := append([]string{"sign", "--identity-token", s.Token(t), "--signing-config", s.SigningConfigPath,
		"--trusted-root", s.TrustedRootPath, "--insecure-skip-verify", "--format", format, ref}, extra...)
	return harness.Run(t, harness.Binary(t), args...)
}

// identityFlags are the verify flags for the stack's identity.
func identityFlags(s *harness.Sigstore) []string {
	return []string{"--certificate-identity", s.Identity, "--certificate-oidc-issuer", s.Issuer,
		"--trusted-root", s.TrustedRootPath, "--insecure-ignore-sct", "--use-signed-timestamps"}
}

// cosignVerifyKeyless checks a node with cosign v2.6.5 and v3.1.3 by
// identity. Bundles are checked with their Rekor v2 entries; the legacy
// layout cannot carry a Rekor v2 entry (cosign's annotation holds a Rekor
// v1 signed entry timestamp), so there the timestamp alone gives the
// signing time (--insecure-ignore-tlog).
func cosignVerifyKeyless(t *testing.T, s *harness.Sigstore, ref, format string) {
	t.Helper()
	common := append(identityFlags(s), "--allow-insecure-registry")
	v2 := append([]string{"--new-bundle-format"}, common...)
	if format == "legacy" {
		common = append(common, "--insecure-ignore-tlog")
		// cosign v2 takes a trusted root only for bundles: for the legacy
		// layout it is given the same CAs as PEM files.
		roots, tsa := legacyTrust(t, s)
		v2 = append(dropFlag(common, "--trusted-root"), "--ca-roots", roots, "--timestamp-certificate-chain", tsa)
	}
	for _, run := range []struct {
		name string
		cmd  func(t *testing.T, env []string, args ...string) harness.Result
		args []string
	}{{"cosign v2.6.5", cosign, v2}, {"cosign v3.1.3", cosign3, common}} {
		if r := run.cmd(t, nil, append(append([]string{"verify"}, run.args...), ref)...); r.Code != 0 {
			t.Errorf("%s verify %s (%s): exit %d\n%s", run.name, ref, format, r.Code, lastLines(r.Stderr, 3))
		}
		if r := run.cmd(t, nil, append(append([]string{"verify-attestation", "--type", "slsaprovenance1"}, run.args...), ref)...); r.Code != 0 {
			t.Errorf("%s verify-attestation %s (%s): exit %d\n%s", run.name, ref, format, r.Code, lastLines(r.Stderr, 3))
		}
	}
}

// TestKeylessTree signs the 3-level, 5-repository tree keylessly in each
// storage format: one certificate for the whole tree, every payload in
// Rekor v2 and timestamped, every node verified by cosign v2 and v3 and by
// nestattest by identity; a re-run writes nothing; a wrong identity, a
// wrong issuer, another trusted root and a tampered bundle each fail,
// naming the node and the reason.
func TestKeylessTree(t *testing.T) {
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	for _, format := range []string{"bundle", "legacy"} {
		t.Run(format, func(t *testing.T) {
			reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
			tree := pushKo(t, reg, "org/ko-build")
			before := s.Requests()
			r := keylessSign(t, s, tree.tag, format)
			if r.Code != 0 || !strings.Contains(r.Stdout, "13 written") {
				t.Fatalf("keyless sign: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			after := s.Requests()
			certs, entries, stamps := after.Certificates-before.Certificates, after.Entries-before.Entries, after.Timestamps-before.Timestamps
			t.Logf("%s: %d certificate, %d Rekor entries, %d timestamps for 13 nodes; %s", format, certs, entries, stamps, lastLines(r.Stdout, 1))
			if certs != 1 || entries != 26 || (format == "bundle" && stamps != 26) || (format == "legacy" && stamps != 39) {
				t.Errorf("%d certificates, %d entries, %d timestamps; want 1, 26 and 26 (legacy: 39, the envelopes timestamped too)", certs, entries, stamps)
			}
			if !strings.Contains(r.Stdout, "1 certificate, 26 transparency-log entries") {
				t.Errorf("the summary does not count what the run made:\n%s", r.Stdout)
			}
			nodes := treeOf(t, tree.tag).refs()
			for _, node := range nodes {
				cosignVerifyKeyless(t, s, node, format)
			}
			args := identityFlags(s)
			if format == "legacy" {
				args = append(args, "--insecure-ignore-tlog")
			}
			doc, vr := verifyTree(t, "", tree.tag, append(args, "--require-root", "--format", format)...)
			if vr.Code != 0 || doc.Summary.Passed != 13 {
				t.Errorf("nestattest verify by identity: exit %d, %+v, %v", vr.Code, doc.Summary, doc.failures())
			}

			// A re-run, with a new certificate, writes nothing.
			before = s.Requests()
			if r := keylessSign(t, s, tree.tag, format); r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") {
				t.Errorf("re-run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			if d := s.Requests(); d.Entries != before.Entries || d.Timestamps != before.Timestamps {
				t.Errorf("re-run logged or timestamped: %+v then %+v", before, d)
			}

			for _, bad := range []struct {
				name   string
				args   []string
				reason string
			}{
				{"another identity", replaceFlag(args, "--certificate-identity", "someone@else.example"), "signature: no signature the policy accepts"},
				{"another issuer", replaceFlag(args, "--certificate-oidc-issuer", "https://accounts.example"), "signature: no signature the policy accepts"},
				{"another trusted root", replaceFlag(args, "--trusted-root", emptyTrustedRoot(t)), "signature: no signature the policy accepts"},
			} {
				doc, vr := verifyTree(t, "", tree.tag, append(bad.args, "--format", format)...)
				f := doc.failures()
				if vr.Code != 1 || len(f) != 13 || !strings.Contains(f[nodes[0]], bad.reason) {
					t.Errorf("%s: exit %d, %d failed, root: %q; want all 13 failing with %q", bad.name, vr.Code, len(f), f[nodes[0]], bad.reason)
				}
			}
			if format == "bundle" {
				victim := nodes[len(nodes)-1]
				tamperBundle(t, victim)
				doc, vr := verifyTree(t, "", tree.tag, append(args, "--format", format)...)
				f := doc.failures()
				if vr.Code != 1 || len(f) != 1 || !strings.HasPrefix(f[victim], "signature: no signature the policy accepts") {
					t.Errorf("tampered bundle: exit %d, failures %v; want only %s", vr.Code, f, victim)
				}
				if r := cosign3(t, nil, append(append([]string{"verify"}, identityFlags(s)...), "--allow-insecure-registry", victim)...); r.Code == 0 {
					t.Errorf("cosign v3 accepts the tampered bundle of %s", victim)
				}
			}
		})
	}
}

// tamperBundle replaces each of ref's bundles, its signature's and its
// attestation's, with a copy whose signed statement has one byte more: no
// signature holds. (cosign v3's verify accepts any bundle of the digest,
// an attestation's too, so tampering with the signature's alone would not
// show that cosign refuses it.)
func tamperBundle(t *testing.T, ref string) {
	t.Helper()
	ctx := context.Background()
	c := registry.NewClient(registry.Options{Write: true})
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(d.DigestStr())
	refs, err := c.Referrers(ctx, d.Repository, h)
	if err != nil {
		t.Fatal(err)
	}
	var kept []v1.Descriptor
	for _, desc := range refs {
		m, err := c.GetManifest(ctx, d.Repository.Digest(desc.Digest.String()), registry.MaxManifestBytes)
		if err != nil {
			t.Fatal(err)
		}
		man, err := v1.ParseManifest(bytes.NewReader(m.Raw))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := c.ReadBlob(ctx, d.Repository, man.Layers[0], 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var b map[string]any
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		env := b["dsseEnvelope"].(map[string]any)
		payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
		env["payload"] = base64.StdEncoding.EncodeToString(append(payload, ' '))
		raw, _ = json.Marshal(b)
		bd, err := c.Upload(ctx, d.Repository, raw)
		if err != nil {
			t.Fatal(err)
		}
		var mm map[string]any
		_ = json.Unmarshal(m.Raw, &mm)
		mm["layers"] = []v1.Descriptor{{MediaType: man.Layers[0].MediaType, Digest: bd, Size: int64(len(raw))}}
		mraw, _ := json.Marshal(mm)
		md, err := c.PutManifest(ctx, d.Repository.Digest("sha256:"+sha256hex(mraw)), types.OCIManifestSchema1, mraw)
		if err != nil {
			t.Fatal(err)
		}
		desc.Digest, desc.Size = md, int64(len(mraw))
		kept = append(kept, desc)
	}
	idx, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: kept})
	if _, err := c.PutManifest(ctx, registry.FallbackTag(d.Repository, h), types.OCIImageIndex, idx); err != nil {
		t.Fatal(err)
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// replaceFlag returns args with flag's value replaced.
func replaceFlag(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out[:len(out)-1] {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

// dropFlag is args without flag and its value.
func dropFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// legacyTrust writes the stack's Fulcio roots and its TSA's chain (leaf
// first) from the trusted root as PEM files, for cosign v2's --ca-roots
// and --timestamp-certificate-chain.
func legacyTrust(t *testing.T, s *harness.Sigstore) (roots, tsa string) {
	t.Helper()
	tr, err := root.NewTrustedRootFromPath(s.TrustedRootPath)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, certs []*x509.Certificate) string {
		var b bytes.Buffer
		for _, c := range certs {
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var cas, chain []*x509.Certificate
	for _, ca := range tr.FulcioCertificateAuthorities() {
		if f, ok := ca.(*root.FulcioCertificateAuthority); ok {
			cas = append(cas, f.Root)
		}
	}
	for _, ta := range tr.TimestampingAuthorities() {
		if a, ok := ta.(*root.SigstoreTimestampingAuthority); ok {
			if a.Leaf != nil {
				chain = append(chain, a.Leaf)
			}
			chain = append(append(chain, a.Intermediates...), a.Root)
			break
		}
	}
	if len(cas) == 0 || len(chain) == 0 {
		t.Fatalf("%s holds no Fulcio CA or no TSA", s.TrustedRootPath)
	}
	return write("fulcio-roots.pem", cas), write("tsa-chain.pem", chain)
}
