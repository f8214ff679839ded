// Package expiry checks that a tree signed keylessly still verifies after
// its certificate has expired, the signing time coming from the
// transparency log and the timestamp authority. Fulcio's certificates live
// ten minutes, so the test waits that long; it is a package of its own so
// that `go test ./...` runs it beside the other packages.
package expiry

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

func TestKeylessVerifiesAfterCertificateExpiry(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	children, err := sample.KoChildren(walk.AnnotationRepository)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(reg.Ref("org/ko-build"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := sample.Pusher{Annotation: walk.AnnotationRepository}.Push(repo, sample.Parent(walk.AnnotationRepository, children), "latest")
	if err != nil {
		t.Fatal(err)
	}
	bin := harness.Binary(t)
	// The services run only while signing: verifying needs the trusted
	// root alone, and the stack's timestamp authority is one a machine.
	trusted := filepath.Join(t.TempDir(), "trusted_root.json")
	var identity, issuer string
	t.Run("sign", func(t *testing.T) {
		s := harness.StartSigstore(t, harness.SigstoreOptions{})
		identity, issuer = s.Identity, s.Issuer
		for _, format := range []string{"bundle", "legacy"} {
			r := harness.Run(t, bin, "sign", "--identity-token", s.Token(t), "--signing-config", s.SigningConfigPath,
				"--trusted-root", s.TrustedRootPath, "--insecure-skip-verify", "--format", format, root.String())
			if r.Code != 0 {
				t.Fatalf("keyless sign --format %s: exit %d\n%s%s", format, r.Code, r.Stdout, r.Stderr)
			}
		}
		raw, err := os.ReadFile(s.TrustedRootPath)
		if err == nil {
			err = os.WriteFile(trusted, raw, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	if t.Failed() {
		return
	}
	notAfter := certificateEnd(t, root.String())
	wait := time.Until(notAfter) + 30*time.Second
	t.Logf("the certificate expires at %s; waiting %v", notAfter.Format(time.RFC3339), wait.Round(time.Second))
	time.Sleep(wait)

	flags := []string{"--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
		"--trusted-root", trusted, "--insecure-ignore-sct", "--use-signed-timestamps", "--allow-insecure-registry"}
	cosign2, cosign3 := harness.Tool(t, "cosign"), harness.Tool(t, "cosign3")
	env := []string{"COSIGN_YES=true", "TUF_ROOT=" + t.TempDir()}
	for _, format := range []string{"bundle", "legacy"} {
		args := flags
		v2 := []string{"--new-bundle-format"}
		if format == "legacy" {
			args = append(args, "--insecure-ignore-tlog") // no Rekor v2 entry in a legacy layer
			v2 = nil
		}
		r := harness.Run(t, bin, append([]string{"verify", "-o", "json", "--format", format, root.String()}, args...)...)
		var doc struct{ Summary struct{ Passed, Failed int } }
		if err := json.Unmarshal([]byte(r.Stdout), &doc); r.Code != 0 || err != nil || doc.Summary.Passed != 13 {
			t.Errorf("nestattest verify --format %s after expiry: exit %d %+v\n%s", format, r.Code, doc.Summary, r.Stderr)
		}
		for _, cmd := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
			for _, tool := range []struct {
				bin   string
				extra []string
			}{{cosign2, v2}, {cosign3, nil}} {
				r := harness.RunEnv(t, env, tool.bin, append(append(append(cmd, tool.extra...), args...), root.String())...)
				if r.Code != 0 {
					t.Errorf("%s %s (%s) after expiry: exit %d\n%s", tool.bin, cmd[0], format, r.Code, r.Stderr)
				}
			}
		}
	}
}

// certificateEnd reads, with crane, the NotAfter of the certificate in the
// root's legacy signature.
func certificateEnd(t *testing.T, root string) time.Time {
	t.Helper()
	d, err := name.NewDigest(root)
	if err != nil {
		t.Fatal(err)
	}
	tag := d.Repository.Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig").String()
	out, err := exec.Command(harness.Tool(t, "crane"), "manifest", "--insecure", tag).Output()
	if err != nil {
		t.Fatalf("crane manifest %s: %v", tag, err)
	}
	var m struct {
		Layers []struct{ Annotations map[string]string }
	}
	if err := json.Unmarshal(out, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("%s: %v", tag, err)
	}
	block, _ := pem.Decode([]byte(m.Layers[0].Annotations["dev.sigstore.cosign/certificate"]))
	if block == nil {
		t.Fatalf("%s carries no certificate", tag)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.NotAfter
}
