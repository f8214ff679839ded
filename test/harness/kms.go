package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// KMSOptions configure local-kms. The zero value is region us-east-1,
// account 111122223333 and alias alias/nestattest-test.
type KMSOptions struct {
	Region    string
	AccountID string
	// Alias names the seeded key: "alias/..." .
	Alias string
}

// KMS is local-kms (github.com/nsmithuk/local-kms, the pinned "local-kms"
// tool), a real AWS KMS API server, seeded with one ECC_NIST_P256
// SIGN_VERIFY key and an alias for it, its data in a temporary directory.
// Clients reach it through a proxy on 127.0.0.1 that counts the requests
// by operation, in plain HTTP at Endpoint (what AWS_ENDPOINT_URL names) or
// in HTTPS at TLSHost (what an awskms://HOST:PORT/... reference names).
type KMS struct {
	// Endpoint is the proxy's "http://127.0.0.1:PORT".
	Endpoint string
	// TLSHost is the "127.0.0.1:PORT" of the same proxy in HTTPS, with a
	// self-signed certificate for 127.0.0.1.
	TLSHost string
	// CAFile is that certificate's PEM file: AWS_CA_BUNDLE for a client
	// that verifies it, instead of AWS_TLS_INSECURE_SKIP_VERIFY=1.
	CAFile string
	// Region and AccountID are the server's, which its ARNs carry.
	Region, AccountID string
	// KeyID is the seeded key's ID (a UUID); Alias its alias.
	KeyID, Alias string
	// PublicKey is the seeded key's public half.
	PublicKey *ecdsa.PublicKey

	forward *httputil.ReverseProxy
	mu      sync.Mutex
	counts  map[string]int
}

// The X-Amz-Target operations the sigstore AWS KMS client sends.
const (
	KMSGetPublicKey = "TrentService.GetPublicKey"
	KMSDescribeKey  = "TrentService.DescribeKey"
	KMSSign         = "TrentService.Sign"
	KMSVerify       = "TrentService.Verify"
)

// kmsKeyID is the seeded key's ID; the key material is new every time.
const kmsKeyID = "6e0f1b7c-3d0a-4f55-9c1e-5a2b8d4e7f10"

// StartKMS starts local-kms on a port of its choosing (PORT=0) with a new
// key, and the counting proxy in front of it. Both stop when the test
// ends; local-kms's log is printed if the test failed. local-kms listens
// on every interface (it takes no address), the proxy on 127.0.0.1 only.
func StartKMS(t testing.TB, opts KMSOptions) *KMS {
	t.Helper()
	bin := Tool(t, "local-kms")
	k := &KMS{Region: opts.Region, AccountID: opts.AccountID, Alias: opts.Alias, KeyID: kmsKeyID, counts: map[string]int{}}
	if k.Region == "" {
		k.Region = "us-east-1"
	}
	if k.AccountID == "" {
		k.AccountID = "111122223333"
	}
	if k.Alias == "" {
		k.Alias = "alias/nestattest-test"
	}
	dir := t.TempDir()
	seed := k.writeSeed(t, dir)
	p := startKMSProcess(t, bin, dir, []string{
		"PORT=0",
		"KMS_ACCOUNT_ID=" + k.AccountID,
		"KMS_REGION=" + k.Region,
		"KMS_SEED_PATH=" + seed,
		"KMS_DATA_PATH=" + filepath.Join(dir, "data"),
	})
	port, err := waitKMS(p)
	if err != nil {
		p.kill()
		t.Fatalf("local-kms: %v; log:\n%s", err, p.log())
	}
	t.Cleanup(func() { p.stop(t) })
	k.proxy(t, "127.0.0.1:"+port)
	return k
}

// writeSeed writes the seed file (local-kms's KMS_SEED_PATH format) with a
// new P-256 key under kmsKeyID and the alias, and keeps its public key.
func (k *KMS) writeSeed(t testing.TB, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	k.PublicKey = &key.PublicKey
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	seed := fmt.Sprintf(`Keys:
  Asymmetric:
    Ecc:
      - Metadata:
          KeyId: %s
          KeyUsage: SIGN_VERIFY
          Description: nestattest test signing key
        PrivateKeyPem: |
          %s
Aliases:
  - AliasName: %s
    TargetKeyId: %s
`, kmsKeyID, strings.ReplaceAll(strings.TrimSpace(string(pemKey)), "\n", "\n          "), k.Alias, kmsKeyID)
	path := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(path, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startKMSProcess starts bin with env added, its output in dir/local-kms.log.
func startKMSProcess(t testing.TB, bin, dir string, env []string) *process {
	t.Helper()
	p := &process{logPath: filepath.Join(dir, "local-kms.log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p
}

var (
	// kmsStarted is the line local-kms logs once it listens.
	kmsStarted = regexp.MustCompile(`Local KMS started on [0-9.]*:(\d+)`)
	// kmsSeeded is the line it logs once the seed file is in its database.
	kmsSeeded = regexp.MustCompile(`1 new keys and 1 new aliases added`)
)

// waitKMS reads local-kms's log until it says it listens, and returns the
// port; the seed must have been taken by then.
func waitKMS(p *process) (string, error) {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		out := p.log()
		if m := kmsStarted.FindStringSubmatch(out); m != nil {
			if !kmsSeeded.MatchString(out) {
				return "", fmt.Errorf("the seed file was not taken")
			}
			return m[1], p.running()
		}
		select {
		case <-p.exited:
			return "", p.running()
		case <-deadline.C:
			return "", fmt.Errorf("not listening within %v", startTimeout)
		case <-tick.C:
		}
	}
}

// proxy starts the counting proxy to upstream, in HTTP and in HTTPS.
func (k *KMS) proxy(t testing.TB, upstream string) {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: upstream}
	transport := &http.Transport{}
	k.forward = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: transport,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	plain := httptest.NewServer(k)
	secure := httptest.NewUnstartedServer(k)
	secure.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes a test means to fail
	secure.StartTLS()
	t.Cleanup(func() {
		plain.Close()
		secure.Close()
		transport.CloseIdleConnections()
	})
	k.Endpoint = plain.URL
	k.TLSHost = strings.TrimPrefix(secure.URL, "https://")
	k.CAFile = filepath.Join(t.TempDir(), "kms-proxy-ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw})
	if err := os.WriteFile(k.CAFile, cert, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ServeHTTP counts a request by its X-Amz-Target and forwards it.
func (k *KMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.counts[r.Header.Get("X-Amz-Target")]++
	k.mu.Unlock()
	k.forward.ServeHTTP(w, r)
}

// Counts returns the requests since the start or the last Reset, by
// X-Amz-Target operation (KMSSign, KMSGetPublicKey, ...), HTTP and HTTPS
// together.
func (k *KMS) Counts() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.counts)
}

// Reset forgets the counts.
func (k *KMS) Reset() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.counts = map[string]int{}
}

// KeyRef is the key as a user names it with the endpoint in the
// environment (Env): "awskms:///alias/nestattest-test".
func (k *KMS) KeyRef() string { return "awskms:///" + k.Alias }

// TLSKeyRef is the key with the endpoint in the reference, which the
// sigstore client speaks HTTPS to: "awskms://127.0.0.1:PORT/alias/...".
// Besides Env, it needs AWS_CA_BUNDLE=CAFile, or
// AWS_TLS_INSECURE_SKIP_VERIFY=1 (which fails when AWS_CA_BUNDLE is set
// too: the SDK cannot add roots to the client sigstore then supplies).
func (k *KMS) TLSKeyRef() string { return "awskms://" + k.TLSHost + "/" + k.Alias }

// Env is the environment a KMS client (the AWS SDK for Go v2, cosign)
// needs to use the server: its endpoint, region and dummy credentials,
// with the process's AWS_CA_BUNDLE and AWS_PROFILE, shared AWS
// configuration and the instance metadata service out of the way.
func (k *KMS) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + k.Endpoint,
		"AWS_REGION=" + k.Region,
		"AWS_ACCESS_KEY_ID=nestattest",
		"AWS_SECRET_ACCESS_KEY=nestattest",
		"AWS_PROFILE=",
		"AWS_CA_BUNDLE=",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}
