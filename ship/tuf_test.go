package ship

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/result"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nestattest/nestattest/test/harness"
)

// TestTaskSignsKeylesslyFromTUF runs the Task keylessly with no trust
// parameter but the two a private sigstore needs, TUF_MIRROR and TUF_ROOT
// (the public-good instance needs neither): the trusted root and the
// signing config come from the local sigstore's TUF repository, a go-tuf
// v2 repository on loopback whose targets name the local Fulcio, Rekor v2
// log and timestamp authority; the TUF root.json from the sigstore
// workspace, a ConfigMap. The tree is then verified by identity, by
// nestattest and by cosign v3, both with the same TUF repository.
func TestTaskSignsKeylesslyFromTUF(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	k := f.startKeyless(t)
	repo := harness.StartTUF(t, k.TUFTargets(t), time.Now().Add(24*time.Hour))
	rootJSON, err := os.ReadFile(repo.RootPath)
	if err != nil {
		t.Fatal(err)
	}
	f.secrets["sigstore-tuf"] = map[string][]byte{"root.json": rootJSON}
	tag := f.parent + ":latest"
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "nestattest-tuf-run"},
		Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "nestattest"},
			Params: v1.Params{
				{Name: "IMAGE", Value: *v1.NewStructuredValues(tag)},
				{Name: "CHILDREN", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--from=ko-refs.txt"}}},
				{Name: "TUF_MIRROR", Value: *v1.NewStructuredValues(repo.URL)},
				{Name: "TUF_ROOT", Value: *v1.NewStructuredValues("/etc/sigstore/root.json")},
				{Name: "FORMAT", Value: *v1.NewStructuredValues("bundle")},
				// The local Fulcio has no CT log: no SCT to check.
				{Name: "EXTRA_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--insecure-skip-verify"}}},
			},
			Workspaces: append(workspaces(), v1.WorkspaceBinding{Name: "sigstore", ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "sigstore-tuf"}}}),
		},
	}
	p := newPod(t, taskRun{task: loadTask(t), run: tr, secrets: f.secrets, token: k.token(t)})
	write(t, filepath.Join(p.workspacePath("source"), "ko-refs.txt"), f.refs, 0o644)
	before := k.Requests()
	p.run()
	sign := stepContainer("sign")
	if p.exit[sign] != 0 {
		t.Fatalf("sign exited %d:\n%s", p.exit[sign], p.output[sign])
	}
	t.Logf("Task, keyless from TUF %s: %s", repo.URL, lastLine(p.output[sign]))
	digest := f.checkResults(t, p.hostPath("/tekton/results"), tag)
	checkTermination(t, p.results(sign), result.TaskRunResultType, tag, digest)
	if after := k.Requests(); after.Certificates-before.Certificates != 1 || after.Entries == before.Entries || after.Timestamps == before.Timestamps {
		t.Errorf("sigstore: %+v then %+v; want 1 certificate, and entries and timestamps from the services the TUF signing config names", before, after)
	}
	tuf := []string{"--tuf-mirror", repo.URL, "--tuf-root", repo.RootPath, "--tuf-cache", t.TempDir()}
	f.verifyWith(t, tag, nil, append([]string{"--certificate-identity", k.Identity, "--certificate-oidc-issuer", k.Issuer,
		"--insecure-ignore-sct", "--use-signed-timestamps", "--require-root", "--format", "bundle"}, tuf...)...)
	cosignHome := t.TempDir()
	env := []string{"DOCKER_CONFIG=" + f.dockerDir, "HOME=" + cosignHome, "TUF_ROOT="}
	if r := harness.RunEnv(t, env, harness.Tool(t, "cosign3"), "initialize", "--mirror", repo.URL, "--root", repo.RootPath); r.Code != 0 {
		t.Fatalf("cosign v3 initialize: exit %d\n%s", r.Code, r.Stderr)
	}
	for _, ref := range []string{tag + "@" + digest, f.firstChild()} {
		for _, cmd := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
			r := harness.RunEnv(t, env, harness.Tool(t, "cosign3"), append(cmd, "--certificate-identity", k.Identity,
				"--certificate-oidc-issuer", k.Issuer, "--insecure-ignore-sct", "--allow-insecure-registry", ref)...)
			if r.Code != 0 {
				t.Errorf("cosign v3 %s %s (trust from TUF): exit %d\n%s", cmd[0], ref, r.Code, r.Stderr)
			}
		}
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
