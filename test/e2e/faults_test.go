package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nestattest/nestattest/test/harness"
)

// TestSignThroughFaults signs a 100-node tree through a proxy that fails a
// few percent of requests in every way it knows: the tree completes, through
// retries and at worst a re-run; every .sig and .att manifest has all its
// blobs and exactly one entry from the key.
func TestSignThroughFaults(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tag := pushWide(t, reg.Host, "org/faults", 9, 10)
	k := newKeyPair(t, "cosign")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{Faults: &harness.Faults{
		Seed: 20261126, Rate: 0.04, Kinds: harness.AllFaults, Max: 60, Slow: 200 * time.Millisecond,
	}})
	ref := strings.Replace(tag, reg.Host, proxy.Host, 1)
	runs := 0
	for ; runs < 3; runs++ {
		r := harness.RunEnv(t, k.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, "--retries", "4", ref)
		t.Logf("run %d: exit %d\n%s%s", runs+1, r.Code, r.Stdout, lastLines(r.Stderr, 5))
		if r.Code == 0 {
			break
		}
		if r.Code != 1 || !strings.Contains(r.Stdout, "FAILED") {
			t.Fatalf("run %d: exit %d, want 0 or 1 with the failed nodes reported", runs+1, r.Code)
		}
	}
	if runs == 3 {
		t.Fatal("three runs did not complete the tree")
	}
	injected := proxy.Injected()
	t.Logf("faults injected: %v over %d requests, %d run(s)", injected, proxy.Counts().Total, runs+1)
	if total := sum(injected); total < 10 {
		t.Errorf("only %d faults injected; the test proves little", total)
	}
	checkStored(t, ref, k, treeOf(t, tag).refs(), reg.Host, proxy.Host)
}

// TestSignKilledHalfway kills sign with SIGKILL once it has written part of
// a tree; a re-run completes it, every node signed exactly once.
func TestSignKilledHalfway(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tag := pushWide(t, reg.Host, "org/killed", 9, 10)
	k := newKeyPair(t, "cosign")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	ref := strings.Replace(tag, reg.Host, proxy.Host, 1)

	cmd := exec.Command(harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, "-j", "2", ref)
	cmd.Env = append(cmd.Environ(), k.env()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for proxy.Counts().ByKind["manifest PUT"] < 60 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()
	puts := proxy.Counts().ByKind["manifest PUT"]
	if puts >= 200 {
		t.Fatalf("sign finished (%d manifest PUTs) before it was killed", puts)
	}
	if puts < 60 {
		t.Fatalf("sign wrote only %d signature and attestation manifests in two minutes: it was not killed halfway", puts)
	}
	t.Logf("killed after %d of 200 signature and attestation manifests", puts)

	r := harness.RunEnv(t, k.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, ref)
	if r.Code != 0 {
		t.Fatalf("re-run: exit %d\n%s", r.Code, r.Stderr)
	}
	checkStored(t, ref, k, treeOf(t, tag).refs(), reg.Host, proxy.Host)
}

// checkStored reads, from the registry itself, every node's .sig and .att:
// exactly one layer each, every blob present; then cosign verifies every
// node, all of them in one cosign command (cosignVerifyEach).
func checkStored(t *testing.T, ref string, k keyPair, nodes []string, regHost, proxyHost string) {
	t.Helper()
	var signed []string
	for _, n := range nodes {
		signed = append(signed, strings.Replace(n, regHost, proxyHost, 1)) // signed through the proxy: its host is in the payload
		for _, tag := range []string{sigTag(n), attTag(n)} {
			m, err := storedManifest(tag)
			if err != nil {
				t.Errorf("%s: %v", tag, err)
				continue
			}
			if len(m.Layers) != 1 {
				t.Errorf("%s: %d layers, want exactly 1", tag, len(m.Layers))
			}
			repo := tag[:strings.LastIndex(tag, ":")]
			for _, d := range append([]string{m.Config.Digest}, digests(m.Layers)...) {
				if err := blobStored(repo, d); err != nil {
					t.Errorf("%s points at missing blob %s: %v", tag, d, err)
				}
			}
		}
	}
	cosignVerifyEach(t, k.pub, signed)
}

// storedManifest reads the manifest of tag (host/repo:tag, plain HTTP, no
// auth) from the registry, as crane manifest does.
func storedManifest(tag string) (m struct {
	Config struct{ Digest string }
	Layers []struct{ Digest string }
}, err error) {
	ref, err := name.ParseReference(tag, name.Insecure)
	if err != nil {
		return m, err
	}
	raw, err := crane.Manifest(ref.String(), crane.Insecure)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(raw, &m)
}

// blobStored asks the registry whether repo (host/repo) holds blob digest.
func blobStored(repo, digest string) error {
	l, err := crane.PullLayer(repo+"@"+digest, crane.Insecure)
	if err != nil {
		return err
	}
	_, err = l.Size() // a HEAD request: the registry answers for the blob
	return err
}

func digests(layers []struct{ Digest string }) []string {
	var out []string
	for _, l := range layers {
		out = append(out, l.Digest)
	}
	return out
}

func sum(m map[harness.FaultKind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestSignInterrupted sends SIGINT to a 1,000-node sign halfway: it stops
// with one line and exit 130, writes the partial report, and a re-run
// completes the tree.
func TestSignInterrupted(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tag := pushWide(t, reg.Host, "org/interrupted", 37, 26) // 1 + 37 + 962 nodes
	k := newKeyPair(t, "cosign")
	proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{})
	ref := strings.Replace(tag, reg.Host, proxy.Host, 1)
	report := filepath.Join(t.TempDir(), "report.json")

	cmd := exec.Command(harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, "--report", report, ref)
	cmd.Env = append(cmd.Environ(), k.env()...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for proxy.Counts().ByKind["manifest PUT"] < 300 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	sent := time.Now()
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	stopped := time.Since(sent)
	code := cmd.ProcessState.ExitCode()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	t.Logf("stopped %v after SIGINT, exit %d: %q", stopped.Round(time.Millisecond), code, lines)
	if code != 130 || len(lines) != 1 || !strings.HasPrefix(lines[0], "interrupted after ") || !strings.Contains(lines[0], "of 1000 nodes") {
		t.Fatalf("exit %d, stderr %q; want 130 and one line", code, stderr.String())
	}
	var doc struct {
		Nodes   []struct{ Places []struct{ Signature string } }
		Summary struct{ Nodes, Written, Pending int }
	}
	raw, err := os.ReadFile(report)
	if err != nil || json.Unmarshal(raw, &doc) != nil || doc.Summary.Nodes != 1000 || doc.Summary.Written == 0 || doc.Summary.Pending == 0 {
		t.Fatalf("partial report: %v %+v", err, doc.Summary)
	}
	r := harness.RunEnv(t, k.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, ref)
	if r.Code != 0 {
		t.Fatalf("re-run: exit %d\n%s", r.Code, r.Stderr)
	}
	t.Logf("re-run: %s", strings.TrimSpace(r.Stdout))
	if d := verifyJSON(t, k.pub, ref); d.Summary.Failed != 0 || d.Summary.Passed != 1000 {
		var some []string
		for node, why := range d.failures() {
			if len(some) < 3 {
				some = append(some, node+": "+why)
			}
		}
		t.Errorf("after the re-run: %+v, e.g. %q", d.Summary, some)
	}
}

// TestFaultsReportWhatWasWritten signs a 100-node tree through the fault
// proxy at 5%, 15% and 30% of requests, every kind of fault (bodies cut
// short included), two seeds each: one run completes the tree within
// --retries 8 (see below); what the report calls written is exactly the layers added
// to the .sig and .att tags (counted from the registry itself), none
// twice; cosign verifies every node; a re-run through the faults writes
// nothing and says so.
func TestFaultsReportWhatWasWritten(t *testing.T) {
	for _, rate := range []float64{0.05, 0.15, 0.30} {
		for _, seed := range []int64{1, 2} {
			t.Run(fmt.Sprintf("%.0f%% seed %d", rate*100, seed), func(t *testing.T) {
				reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
				tag := pushWide(t, reg.Host, "org/faults", 9, 10)
				k := newKeyPair(t, "cosign")
				proxy := harness.NewProxy(t, reg.Host, harness.ProxyOptions{Faults: &harness.Faults{
					Seed: seed, Rate: rate, Kinds: harness.AllFaults, Slow: 100 * time.Millisecond,
				}})
				ref := strings.Replace(tag, reg.Host, proxy.Host, 1)
				report := filepath.Join(t.TempDir(), "report.json")
				// A request gives up after 1+retries attempts all meet a
				// fault. At 30%, 4 in 7 faults fail a request outright, so
				// with --retries 4 one request in about 6,500 gives up
				// ((0.3*4/7)^5), and the tree's walk, which sign cannot
				// carry past, gave up in one CI run in about fifteen; with
				// 8, one in 7.5 million does. The test is about what is
				// written, not how many faults in a row are too many.
				retries := "8"
				r := harness.RunEnv(t, k.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, "--retries", retries, "--report", report, ref)
				injected := proxy.Injected()
				t.Logf("exit %d after %d faults over %d requests: %v\n%s", r.Code, sum(injected), proxy.Counts().Total, injected, lastLines(r.Stdout+r.Stderr, 3))
				if r.Code != 0 {
					t.Fatalf("sign did not complete the tree through the faults: exit %d", r.Code)
				}
				var doc struct {
					Summary struct{ SignaturesWritten, AttestationsWritten int }
				}
				raw, err := os.ReadFile(report)
				if err != nil || json.Unmarshal(raw, &doc) != nil {
					t.Fatalf("report: %v", err)
				}
				nodes := treeOf(t, tag).refs()
				layers := 0
				for _, n := range nodes {
					layers += layerCount(t, sigTag(n)) + layerCount(t, attTag(n))
				}
				if written := doc.Summary.SignaturesWritten + doc.Summary.AttestationsWritten; written != layers || layers != 2*len(nodes) {
					t.Errorf("the report says %d written, the registry holds %d layers for %d nodes", written, layers, len(nodes))
				}
				// cosign reads the registry itself: through the faults, its
				// own retries would give up on some nodes.
				checkStored(t, ref, k, nodes, reg.Host, reg.Host)
				proxy.Reset()
				again := harness.RunEnv(t, k.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, "--retries", retries, ref)
				if again.Code != 0 || !strings.Contains(again.Stdout, "nothing to write") || proxy.Counts().Writes() != 0 {
					t.Errorf("re-run: exit %d, %d writes\n%s%s", again.Code, proxy.Counts().Writes(), again.Stdout, lastLines(again.Stderr, 5))
				}
			})
		}
	}
}
