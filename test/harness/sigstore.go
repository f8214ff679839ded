package harness

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DefaultIdentity is the email address a Sigstore's tokens carry, and so
// the identity in the certificates Fulcio issues for them.
const DefaultIdentity = "signer@nestattest.example"

// Sigstore is a keyless-signing stack on loopback: Fulcio v1.8.8 with an
// ephemeral CA and no certificate transparency log, a Rekor v2 log
// (rekor-tiles v2.2.1, POSIX storage), the timestamp authority v2.1.3 with
// an in-memory signer, and an OIDC issuer in the test process whose tokens
// Fulcio accepts. Clients reach each service through a counting proxy.
//
// Fulcio treats the issuer as an "email" issuer: a token from Token puts
// Identity in the certificate's email SAN and Issuer in its OIDC issuer
// extension, which is what `cosign verify --certificate-identity Identity
// --certificate-oidc-issuer Issuer` checks. There is no CT log, so
// verifiers need --insecure-ignore-sct. Rekor v2 entries carry no
// integrated time, so a certificate is checked against the TSA's
// timestamp: cosign v3 does so by itself when a bundle has only Rekor v2
// entries, cosign v2 needs --use-signed-timestamps.
//
// Signing with cosign v3 (v2.6.5 takes the same flags, plus
// --new-bundle-format):
//
//	cosign sign --yes --identity-token $(s.Token(t)) \
//	  --signing-config s.SigningConfigPath --trusted-root s.TrustedRootPath \
//	  --allow-insecure-registry REGISTRY/REPO@DIGEST
//	cosign verify --certificate-identity s.Identity \
//	  --certificate-oidc-issuer s.Issuer --trusted-root s.TrustedRootPath \
//	  --insecure-ignore-sct --allow-insecure-registry REGISTRY/REPO@DIGEST
type Sigstore struct {
	// FulcioURL, RekorURL and TSAURL are the services' base URLs,
	// "http://127.0.0.1:PORT"; RekorURL or TSAURL is empty when that service
	// was left out. The timestamp endpoint is TSAURL + "/api/v1/timestamp".
	FulcioURL, RekorURL, TSAURL string
	// IssuerURL is the OIDC issuer's URL, the tokens' "iss".
	IssuerURL string
	// TrustedRootPath is a sigstore trusted_root.json (media type
	// application/vnd.dev.sigstore.trustedroot+json;version=0.1) holding
	// Fulcio's CA, the Rekor log's key and the TSA's chain, and no CT log:
	// what `cosign --trusted-root` takes.
	TrustedRootPath string
	// SigningConfigPath is a sigstore signing_config.json v0.2 naming
	// Fulcio, the issuer, Rekor (API version 2) and the TSA: what
	// `cosign --signing-config` takes.
	SigningConfigPath string
	// Identity and Issuer are what a certificate for a Token carries, for
	// --certificate-identity and --certificate-oidc-issuer.
	Identity, Issuer string
	// OIDC is the issuer, for tokens of other identities or audiences.
	OIDC *OIDCIssuer

	fulcio, rekor, tsa *meter
	// What RotateFulcio needs: the running Fulcio, the trust material
	// written, and when the services were first trusted.
	fulcioDaemon *daemon
	root         trustedRoot
	config       signingConfig
	since        time.Time
	dir          string
}

// SigstoreOptions choose the services of a Sigstore. The zero value starts
// Fulcio, Rekor and the TSA.
type SigstoreOptions struct {
	// NoRekor leaves out the transparency log: the signing config names no
	// log and the trusted root trusts none.
	NoRekor bool
	// NoTSA leaves out the timestamp authority. Without it cosign refuses
	// to sign keylessly into a Rekor v2 log, which gives no signed time.
	NoTSA bool
}

// SigstoreCounts are the requests clients made of a Sigstore's services,
// as their proxies saw them.
type SigstoreCounts struct {
	// Certificates counts certificates Fulcio issued (2xx answers to POST
	// /api/v2/signingCert or /api/v1/signingCert).
	Certificates int
	// Entries counts entries Rekor accepted (2xx answers to POST
	// /api/v2/log/entries).
	Entries int
	// Timestamps counts timestamps the TSA issued (2xx answers to POST
	// /api/v1/timestamp).
	Timestamps int
	// Refused counts answers other than 2xx to those requests, from any of
	// the services.
	Refused int
}

// EnvSharedTSA names a directory through which every test process shares
// one timestamp authority (see StartSigstore). The first Sigstore that
// needs it starts it, detached; the one who set the variable stops it, by
// the process ID in the directory's file pid.
const EnvSharedTSA = "NESTATTEST_SHARED_TSA"

// tsaMachineLock is the file, in the temporary directory, locked while a
// TSA runs on the machine.
const tsaMachineLock = "nestattest-tsa-metrics-2112.lock"

// tsaLockWait bounds the wait for another test's TSA: long enough for the
// longest test that holds one (minutes, on a loaded machine), within the
// suite's 60-minute timeout.
const tsaLockWait = 30 * time.Minute

// StartSigstore starts the issuer, Fulcio, Rekor and the TSA as opts asks
// (the three processes concurrently, each on free loopback ports, each
// answering before StartSigstore returns), writes the trusted root and the
// signing config, and stops everything when the test ends. A missing tool
// skips the test, or fails it under NESTATTEST_E2E=require.
//
// The TSA v2.1.3 always serves metrics on port 2112 of every interface, so
// only one TSA runs on a machine at a time. With EnvSharedTSA set (test/ci.sh
// sets it: it runs packages and e2e shards in parallel, many of which need a
// TSA), every test process uses the one TSA started for the directory it
// names, each Sigstore counting its own timestamps through its own meter.
// Without it, StartSigstore starts a TSA of its own, waiting up to
// tsaLockWait for a TSA of another test or test process to stop.
func StartSigstore(t testing.TB, opts SigstoreOptions) *Sigstore {
	t.Helper()
	fulcioBin := Tool(t, "fulcio")
	var rekorBin, tsaBin string
	if !opts.NoRekor {
		rekorBin = Tool(t, "rekor-server")
	}
	if !opts.NoTSA {
		tsaBin = Tool(t, "timestamp-server")
	}
	dir := t.TempDir()
	since := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	oidc := NewOIDCIssuer(t)
	s := &Sigstore{IssuerURL: oidc.URL, Identity: DefaultIdentity, Issuer: oidc.URL, OIDC: oidc}

	fulcio := fulcioDaemon(t, fulcioBin, filepath.Join(dir, "fulcio"), oidc.URL, since)
	daemons := []*daemon{fulcio}
	var rekor, tsa *daemon
	if !opts.NoRekor {
		rekor = rekorDaemon(t, rekorBin, filepath.Join(dir, "rekor"), since)
		daemons = append(daemons, rekor)
	}
	shared := sharedTSADir()
	if !opts.NoTSA {
		tsa = tsaDaemon(tsaBin, filepath.Join(dir, "tsa"), since)
		if shared == "" {
			holdMachineLock(t, tsaMachineLock, tsaLockWait)
			daemons = append(daemons, tsa)
		}
	}
	for _, d := range daemons {
		d.launch(t)
	}
	root := trustedRoot{MediaType: trustedRootMediaType}
	sc := signingConfig{MediaType: signingConfigMediaType, OIDCURLs: []service{serviceAt(oidc.URL, 1, since)}}
	for _, d := range daemons {
		body := d.await(t)
		d.meter = newMeter(t, d.base, d.counted...)
		d.describe(t, d.meter.URL, body, &root, &sc)
	}
	if tsa != nil && shared != "" {
		base, body := sharedTSA(t, tsaBin, shared)
		tsa.base, tsa.meter = base, newMeter(t, base, tsa.counted...)
		tsa.describe(t, tsa.meter.URL, body, &root, &sc)
	}
	s.fulcio, s.FulcioURL, s.fulcioDaemon = fulcio.meter, fulcio.meter.URL, fulcio
	if rekor != nil {
		s.rekor, s.RekorURL = rekor.meter, rekor.meter.URL
	}
	if tsa != nil {
		s.tsa, s.TSAURL = tsa.meter, tsa.meter.URL
	}
	s.root, s.config, s.since, s.dir = root, sc, since, dir
	s.writeTrust(t)
	return s
}

// writeTrust writes the trusted root and the signing config.
func (s *Sigstore) writeTrust(t testing.TB) {
	t.Helper()
	s.TrustedRootPath = writeJSONFile(t, filepath.Join(s.dir, "trusted_root.json"), s.root)
	s.SigningConfigPath = writeJSONFile(t, filepath.Join(s.dir, "signing_config.json"), s.config)
}

// RotateFulcio replaces Fulcio with a new one under a new ephemeral CA, for
// the same issuer, as an operator rotates a certificate authority: the new
// Fulcio starts, the old one stops, and the trusted root (rewritten at
// TrustedRootPath) trusts the old CA until now, so that what it certified
// stays verifiable, and the new CA from now; the signing config (rewritten
// at SigningConfigPath) names the new Fulcio only. FulcioURL and Requests
// are the new Fulcio's afterwards.
func (s *Sigstore) RotateFulcio(t testing.TB) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	next := fulcioDaemon(t, Tool(t, "fulcio"), filepath.Join(s.dir, fmt.Sprintf("fulcio-%d", now.UnixNano())), s.IssuerURL, now)
	next.launch(t)
	body := next.await(t)
	next.meter = newMeter(t, next.base, next.counted...)
	for i := range s.root.CertificateAuthorities {
		if s.root.CertificateAuthorities[i].ValidFor.End == nil {
			s.root.CertificateAuthorities[i].ValidFor.End = &now
		}
	}
	s.config.CAURLs = nil
	next.describe(t, next.meter.URL, body, &s.root, &s.config)
	s.fulcioDaemon.p.stop(t)
	s.fulcioDaemon, s.fulcio, s.FulcioURL = next, next.meter, next.meter.URL
	s.writeTrust(t)
}

// Token returns a fresh ID token for Identity, valid for ten minutes.
func (s *Sigstore) Token(t testing.TB) string {
	t.Helper()
	return s.OIDC.Mint(t, IDToken{Email: s.Identity})
}

// Requests returns what clients have asked of the services so far.
func (s *Sigstore) Requests() SigstoreCounts {
	var c SigstoreCounts
	var refused [3]int
	c.Certificates, refused[0] = s.fulcio.counts()
	c.Entries, refused[1] = s.rekor.counts()
	c.Timestamps, refused[2] = s.tsa.counts()
	c.Refused = refused[0] + refused[1] + refused[2]
	return c
}

// fulcioDaemon is Fulcio with an ephemeral CA, no CT log, and the issuer
// at issuerURL as an email issuer for the client ID "sigstore". Fulcio
// reads the issuer's discovery document as it starts, so the issuer must
// be serving by then. The JSON keys are those of Fulcio's FulcioConfig
// (pkg/config), which ignores unknown ones silently.
func fulcioDaemon(t testing.TB, bin, dir, issuerURL string, since time.Time) *daemon {
	t.Helper()
	cfg := map[string]any{"OIDCIssuers": map[string]any{issuerURL: map[string]string{
		"IssuerURL": issuerURL,
		"ClientID":  "sigstore",
		"Type":      "email",
	}}}
	cfgPath := writeJSONFile(t, filepath.Join(mkdir(t, dir), "config.json"), cfg)
	socket := fmt.Sprintf("@nestattest-fulcio-%d-%d", os.Getpid(), sockets.Add(1))
	return &daemon{
		name: "fulcio", bin: bin, dir: dir, ready: "/api/v2/trustBundle",
		counted: []string{"/api/v2/signingCert", "/api/v1/signingCert"},
		args: func(t testing.TB) ([]string, string) {
			web, grpc, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
			return []string{"serve",
				"--ca", "ephemeralca", "--ct-log-url", "",
				"--config-path", cfgPath,
				"--host", host(web), "--port", port(web),
				"--grpc-host", host(grpc), "--grpc-port", port(grpc),
				// Fulcio serves metrics on every interface; only the port can be chosen.
				"--metrics-port", port(metrics),
				"--legacy-unix-domain-socket", socket,
			}, web
		},
		describe: func(t testing.TB, at string, body []byte, root *trustedRoot, sc *signingConfig) {
			root.CertificateAuthorities = append(root.CertificateAuthorities, authority(t, at, fulcioChain(t, body), since))
			sc.CAURLs = append(sc.CAURLs, serviceAt(at, 1, since))
		},
	}
}

// sockets numbers Fulcio's abstract legacy gRPC sockets within the process.
var sockets atomic.Int64

// rekorDaemon is a Rekor v2 log on POSIX storage in dir, signing its
// checkpoints with a fresh Ed25519 key under the origin "127.0.0.1": the
// host name of its URL, which is the origin sigstore-go checks checkpoints
// against.
func rekorDaemon(t testing.TB, bin, dir string, since time.Time) *daemon {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(mkdir(t, dir), "checkpoint-key.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	storage := mkdir(t, filepath.Join(dir, "log"))
	return &daemon{
		name: "rekor-server", bin: bin, dir: dir, ready: "/healthz",
		counted: []string{"/api/v2/log/entries"},
		args: func(t testing.TB) ([]string, string) {
			web, grpc, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
			return []string{"serve",
				"--hostname", rekorOrigin,
				"--http-address", host(web), "--http-port", port(web),
				"--grpc-address", host(grpc), "--grpc-port", port(grpc),
				"--http-metrics-port", port(metrics),
				"--storage-dir", storage,
				"--signer-filepath", keyPath,
				"--checkpoint-interval", rekorCheckpointInterval.String(),
				"--batch-max-age", "50ms",
			}, web
		},
		describe: func(t testing.TB, at string, _ []byte, root *trustedRoot, sc *signingConfig) {
			root.Tlogs = append(root.Tlogs, rekorLog(t, at, pub, since))
			sc.RekorTlogURLs = append(sc.RekorTlogURLs, serviceAt(at, 2, since))
			sc.RekorTlogConfig = &serviceConfig{Selector: "ANY"}
		},
	}
}

// rekorOrigin is the Rekor log's checkpoint origin.
const rekorOrigin = "127.0.0.1"

// rekorCheckpointInterval is how often the log publishes a checkpoint
// (100ms at least, for POSIX storage). Rekor answers an entry once it sees
// a checkpoint covering it, polling every second: adding an entry takes
// from a few hundred milliseconds to about 1.3 seconds.
const rekorCheckpointInterval = 200 * time.Millisecond

// tsaDaemon is the timestamp authority with its in-memory signer (a fresh
// root, intermediate and leaf) and no NTP monitoring (which would reach for
// public NTP servers). It runs in dir, where it looks for a configuration
// file it will not find.
func tsaDaemon(bin, dir string, since time.Time) *daemon {
	return &daemon{
		name: "timestamp-server", bin: bin, dir: dir, ready: tsaReady,
		counted: []string{"/api/v1/timestamp"},
		args:    tsaArgs,
		describe: func(t testing.TB, at string, body []byte, root *trustedRoot, sc *signingConfig) {
			root.TimestampAuthorities = append(root.TimestampAuthorities, authority(t, at, pemChain(t, body), since))
			sc.TSAURLs = append(sc.TSAURLs, serviceAt(at+"/api/v1/timestamp", 1, since))
			sc.TSAConfig = &serviceConfig{Selector: "ANY"}
		},
	}
}

// tsaReady is the timestamp authority's path polled until it answers: its
// certificate chain, which the trusted root takes.
const tsaReady = "/api/v1/timestamp/certchain"

// tsaArgs returns the timestamp authority's arguments on a fresh port, and
// the host:port it serves.
func tsaArgs(t testing.TB) ([]string, string) {
	web := freeAddr(t)
	return []string{"serve",
		"--host", host(web), "--port", port(web),
		"--timestamp-signer", "memory",
		"--disable-ntp-monitoring",
	}, web
}

// daemon is one service process of a Sigstore.
type daemon struct {
	name, bin, dir string
	// args returns the arguments and the HTTP host:port of one attempt,
	// with fresh ports.
	args func(testing.TB) ([]string, string)
	// ready is the path polled until it answers 200.
	ready string
	// counted are the paths whose POSTs the daemon's meter counts.
	counted []string
	// describe adds the service, reached at the base URL at, to the
	// trusted root and the signing config; body is its answer to GET ready.
	describe func(t testing.TB, at string, body []byte, root *trustedRoot, sc *signingConfig)

	p     *process
	base  string // http://host:port
	meter *meter // in front of the running service
}

// launch starts an attempt, killed when the test ends.
func (d *daemon) launch(t testing.TB) {
	t.Helper()
	args, addr := d.args(t)
	p := launch(t, mkdir(t, d.dir), d.name, d.bin, args...)
	t.Cleanup(func() { p.stop(t) })
	d.p, d.base = p, "http://"+addr
}

// await waits for the daemon to answer GET ready with 200 and returns the
// body. A port taken between choosing it and the daemon binding it is
// retried with others.
func (d *daemon) await(t testing.TB) []byte {
	t.Helper()
	for attempt := 1; ; attempt++ {
		body, err := d.p.poll(d.base + d.ready)
		if err == nil {
			return body
		}
		d.p.kill()
		if attempt < 3 && strings.Contains(d.p.log(), "address already in use") {
			d.launch(t)
			continue
		}
		t.Fatalf("%s: %v; log:\n%s", d.name, err, d.p.log())
	}
}

// launch starts bin with args in dir, its output going to dir/name.log.
// It is killed if the test process dies.
func launch(t testing.TB, dir, name, bin string, args ...string) *process {
	t.Helper()
	return launchWith(t, dieWithParent, dir, name, bin, args...)
}

// launchWith is launch with setup, instead of dieWithParent, applied to the
// command before it starts.
func launchWith(t testing.TB, setup func(*exec.Cmd), dir, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{logPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	setup(p.cmd)
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

// poll GETs u until it answers 200, the process exits or startTimeout
// passes, and returns the body of the 200.
func (p *process) poll(u string) ([]byte, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get(u); err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return body, p.running()
			}
		}
		select {
		case <-p.exited:
			return nil, p.running()
		case <-deadline.C:
			return nil, fmt.Errorf("no 200 to GET %s within %v", u, startTimeout)
		case <-tick.C:
		}
	}
}

// meter is a reverse proxy in front of one service that counts the
// answers to POSTs to some paths.
type meter struct {
	URL string

	mu          sync.Mutex
	ok, refused int
}

// newMeter starts a meter in front of upstream ("http://host:port"),
// stopped when the test ends.
func newMeter(t testing.TB, upstream string, paths ...string) *meter {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	m := &meter{}
	counted := func(r *http.Request) bool {
		for _, p := range paths {
			if r.Method == http.MethodPost && r.URL.Path == p {
				return true
			}
		}
		return false
	}
	transport := &http.Transport{}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: transport,
		ModifyResponse: func(resp *http.Response) error {
			if counted(resp.Request) {
				m.count(resp.StatusCode/100 == 2)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if counted(r) {
				m.count(false)
			}
			http.Error(w, "test proxy: "+err.Error(), http.StatusBadGateway)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	s := httptest.NewServer(proxy)
	t.Cleanup(func() {
		s.Close()
		transport.CloseIdleConnections()
	})
	m.URL = s.URL
	return m
}

func (m *meter) count(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok {
		m.ok++
	} else {
		m.refused++
	}
}

// counts returns the counted answers; a nil meter has none.
func (m *meter) counts() (ok, refused int) {
	if m == nil {
		return 0, 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ok, m.refused
}

// fulcioChain returns the first chain of Fulcio's /api/v2/trustBundle
// answer, leaf-most first.
func fulcioChain(t testing.TB, body []byte) []*x509.Certificate {
	t.Helper()
	var bundle struct {
		Chains []struct {
			Certificates []string `json:"certificates"`
		} `json:"chains"`
	}
	if err := json.Unmarshal(body, &bundle); err != nil || len(bundle.Chains) == 0 {
		t.Fatalf("fulcio trust bundle %q: %v", body, err)
	}
	return pemChain(t, []byte(strings.Join(bundle.Chains[0].Certificates, "\n")))
}

// pemChain parses the certificates of a PEM bundle.
func pemChain(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		t.Fatal("no certificate in PEM bundle")
	}
	return certs
}

// mkdir creates dir and returns it.
func mkdir(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeJSONFile writes v as indented JSON to path and returns path.
func writeJSONFile(t testing.TB, path string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// host and port split "host:port".
func host(addr string) string { h, _, _ := strings.Cut(addr, ":"); return h }
func port(addr string) string { _, p, _ := strings.Cut(addr, ":"); return p }
