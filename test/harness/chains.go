package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ChainsConfig has Chains sign image results with its x509 signer on the
// cosign key and store SLSA v1.0 provenance (slsa/v2alpha4, the newest
// format of Chains v0.29.2 and v0.22.0; predicate type https://slsa.dev/provenance/v1,
// cosign's slsaprovenance1) next to the image, no transparency log.
const ChainsConfig = `artifacts.taskrun.format: slsa/v2alpha4
artifacts.taskrun.storage: oci
artifacts.taskrun.signer: x509
artifacts.oci.format: simplesigning
artifacts.oci.storage: oci
artifacts.oci.signer: x509
storage.oci.repository.insecure: "true"
transparency.enabled: "false"
`

// ChainsSign has Tekton Chains' own controller code (the chains-sign tool,
// built by test/consumers/build.sh from the newest Chains the module proxy
// serves that it supports: v0.29.2, else v0.22.0) sign and attest
// what a completed build TaskRun's IMAGE_URL (url) and IMAGE_DIGEST
// (digest) results name, as configured by [ChainsConfig]. secrets is the
// signing-secrets directory Chains reads: cosign.key, cosign.password and
// cosign.pub. dockerConfig, unless "", is a Docker config.json the run's
// ServiceAccount has as image pull secret, which Chains' oci storage
// authenticates with. It fails the test when Chains does not sign.
func ChainsSign(t testing.TB, secrets, dockerConfig, url, digest string) {
	t.Helper()
	ChainsSignRuns(t, ChainsRuns{Secrets: secrets, DockerConfig: dockerConfig,
		TaskRuns: [][]byte{[]byte(fmt.Sprintf(completedTaskRun, url, digest))}})
}

// ChainsRuns are completed runs for Tekton Chains to sign, and how.
type ChainsRuns struct {
	// Config is the chains-config ConfigMap's data as key: value lines;
	// empty, [ChainsConfig].
	Config string
	// Secrets is the signing-secrets directory Chains reads: cosign.key,
	// cosign.password and cosign.pub.
	Secrets string
	// DockerConfig, unless "", is a Docker config.json the runs'
	// ServiceAccount has as image pull secret, which Chains' oci storage
	// authenticates with.
	DockerConfig string
	// TaskRuns and PipelineRun are tekton.dev/v1 runs, YAML or JSON, done;
	// a PipelineRun's child TaskRuns are among TaskRuns.
	TaskRuns    [][]byte
	PipelineRun []byte
}

// ChainsSignRuns has Tekton Chains' own controller code (chains-sign, as
// [ChainsSign]) sign and attest what the runs' results name and store it
// as configured. It fails the test when Chains does not sign, and returns
// what chains-sign printed: the annotations Chains left, as JSON.
func ChainsSignRuns(t testing.TB, r ChainsRuns) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chains-config.yaml")
	config := r.Config
	if config == "" {
		config = ChainsConfig
	}
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--signing-secrets", r.Secrets}
	for i, tr := range r.TaskRuns {
		file := filepath.Join(dir, fmt.Sprintf("taskrun-%d.yaml", i))
		if err := os.WriteFile(file, tr, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--taskrun", file)
	}
	if r.PipelineRun != nil {
		file := filepath.Join(dir, "pipelinerun.yaml")
		if err := os.WriteFile(file, r.PipelineRun, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--pipelinerun", file)
	}
	if r.DockerConfig != "" {
		args = append(args, "--docker-config", r.DockerConfig)
	}
	res := Run(t, Consumer(t, "chains-sign"), args...)
	if res.Code != 0 {
		t.Fatalf("chains-sign: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// completedTaskRun is the build-side Task's run, done, its type-hinted
// results naming the parent: IMAGE_URL (%s) and IMAGE_DIGEST (%s).
const completedTaskRun = `apiVersion: tekton.dev/v1
kind: TaskRun
metadata:
  name: build-ko
  namespace: build
  uid: 6f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f
spec:
  serviceAccountName: builder
  taskRef:
    name: nestattest
    kind: Task
status:
  podName: build-ko-pod
  startTime: "2026-11-30T03:04:05Z"
  completionTime: "2026-11-30T03:05:06Z"
  conditions:
  - type: Succeeded
    status: "True"
    reason: Succeeded
    lastTransitionTime: "2026-11-30T03:05:06Z"
  steps:
  - name: sign
    container: step-sign
    imageID: ghcr.io/nestattest/nestattest@sha256:0000000000000000000000000000000000000000000000000000000000000001
  results:
  - name: IMAGE_URL
    type: string
    value: %s
  - name: IMAGE_DIGEST
    type: string
    value: %s
  taskSpec:
    results:
    - name: IMAGE_URL
      type: string
    - name: IMAGE_DIGEST
      type: string
    steps:
    - name: sign
      image: ghcr.io/nestattest/nestattest:latest
      args: ["catalog", "--from", "ko-refs.txt", "parent:latest"]
`
