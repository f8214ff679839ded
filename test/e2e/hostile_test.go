package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

// hostileRegistry serves manifests from a map, and whatever handlers a test
// adds for particular paths.
type hostileRegistry struct {
	host      string
	mu        sync.Mutex
	manifests map[string][]byte // path below /v2/ → body
	handlers  map[string]http.HandlerFunc
}

func newHostile(t *testing.T) *hostileRegistry {
	t.Helper()
	h := &hostileRegistry{manifests: map[string][]byte{}, handlers: map[string]http.HandlerFunc{}}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	h.host = strings.TrimPrefix(s.URL, "http://")
	return h
}

func (h *hostileRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	h.mu.Lock()
	handler, ok := h.handlers[r.URL.Path]
	body, found := h.manifests[r.URL.Path]
	h.mu.Unlock()
	switch {
	case ok:
		handler(w, r)
	case found:
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		_, _ = w.Write(body)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	}
}

// put stores an index listing entries in repo, by digest and by tags, and
// returns its descriptor as an index entry.
func (h *hostileRegistry) put(t *testing.T, repo string, entries []map[string]any, tags ...string) map[string]any {
	t.Helper()
	if entries == nil {
		entries = []map[string]any{}
	}
	raw, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ref := range append(tags, digest) {
		h.manifests["/v2/"+repo+"/manifests/"+ref] = raw
	}
	return map[string]any{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": len(raw)}
}

func (h *hostileRegistry) handle(path string, f http.HandlerFunc) {
	h.mu.Lock()
	h.handlers[path] = f
	h.mu.Unlock()
}

// runBounded runs the binary and fails the test if it takes over a minute
// (it would hang) or its peak RSS passes 256 MiB.
func runBounded(t *testing.T, args ...string) harness.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v: did not finish within a minute", args)
	}
	r := harness.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if exit, ok := err.(*exec.ExitError); ok {
		r.Code = exit.ExitCode()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 256<<10 {
		t.Errorf("%v: peak RSS %d KiB, over 256 MiB", args, ru.Maxrss)
	}
	return r
}

// TestHostileRegistries: each hostile answer is refused with a clear
// error, exit 1, within bounded time and memory.
func TestHostileRegistries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, h *hostileRegistry) []string // the command line
		want  string
	}{
		{"manifest over 4 MiB", func(t *testing.T, h *hostileRegistry) []string {
			h.handle("/v2/org/big/manifests/latest", func(w http.ResponseWriter, _ *http.Request) {
				w.(http.Flusher).Flush()
				chunk := []byte(strings.Repeat(" ", 1<<20))
				for range 64 {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
			return []string{"tree", h.host + "/org/big:latest"}
		}, "manifest too large"},
		{"index with a million entries", func(t *testing.T, h *hostileRegistry) []string {
			h.handle("/v2/org/wide/manifests/latest", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				_, _ = w.Write([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`))
				for i := range 1_000_000 {
					sep := ","
					if i == 0 {
						sep = ""
					}
					if _, err := fmt.Fprintf(w, `%s{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%064x","size":1}`, sep, i); err != nil {
						return
					}
				}
				_, _ = w.Write([]byte("]}"))
			})
			return []string{"tree", h.host + "/org/wide:latest"}
		}, "manifest too large"},
		{"nesting beyond --max-depth", func(t *testing.T, h *hostileRegistry) []string {
			var entries []map[string]any
			for range 40 {
				entries = []map[string]any{h.put(t, "org/deep", entries)}
			}
			h.put(t, "org/deep", entries, "latest")
			return []string{"tree", "--max-depth", "16", h.host + "/org/deep:latest"}
		}, "tree too deep"},
		{"more nodes than --max-nodes", func(t *testing.T, h *hostileRegistry) []string {
			var entries []map[string]any
			for i := range 50 {
				entries = append(entries, h.put(t, "org/many", []map[string]any{{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": fmt.Sprintf("sha256:%064x", i), "size": 1}}))
			}
			h.put(t, "org/many", entries, "latest")
			return []string{"tree", "--max-nodes", "20", h.host + "/org/many:latest"}
		}, "too many nodes"},
		{"annotation path traversal", func(t *testing.T, h *hostileRegistry) []string {
			child := h.put(t, "org/other", nil)
			child["annotations"] = map[string]string{"dev.nestattest.repository": "../../other"}
			h.put(t, "org/ns/app", []map[string]any{child}, "latest")
			return []string{"tree", h.host + "/org/ns/app:latest"}
		}, "leaves the index's namespace"},
		{"redirect to another host", func(t *testing.T, h *hostileRegistry) []string {
			other := newHostile(t)
			other.put(t, "org/app", nil, "latest")
			h.handle("/v2/org/app/manifests/latest", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://"+other.host+r.URL.Path, http.StatusTemporaryRedirect)
			})
			return []string{"tree", h.host + "/org/app:latest"}
		}, "redirected to another host"},
		{"content that does not match its digest", func(t *testing.T, h *hostileRegistry) []string {
			child := h.put(t, "org/ns/app", nil)
			h.put(t, "org/ns", []map[string]any{withScope(child, "app")}, "latest")
			h.handle("/v2/org/ns/app/manifests/"+child["digest"].(string), func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[ ]}`))
			})
			return []string{"tree", h.host + "/org/ns:latest"}
		}, "content does not match digest"},
		{"_catalog that never ends", func(t *testing.T, h *hostileRegistry) []string {
			h.put(t, "org/ns", nil, "latest")
			page := 0
			var mu sync.Mutex
			h.handle("/v2/_catalog", func(w http.ResponseWriter, _ *http.Request) {
				mu.Lock()
				page++
				n := page
				mu.Unlock()
				w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?last=org/ns/r%09d&n=100>; rel="next"`, n))
				var repos []string
				for i := range 100 {
					repos = append(repos, fmt.Sprintf("org/ns/r%09d-%03d", n, i))
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"repositories": repos})
			})
			return []string{"catalog", "--discover", "--dry-run", h.host + "/org/ns:latest"}
		}, "repositories below"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostile(t)
			args := tc.setup(t, h)
			r := runBounded(t, args...)
			if r.Code == 0 || r.Code == 2 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", r.Code, lastLines(r.Stderr, 5), tc.want)
			}
		})
	}
}

func withScope(d map[string]any, path string) map[string]any {
	d["annotations"] = map[string]string{"dev.nestattest.repository": path}
	return d
}

// TestSecretsStayOutOfErrors: a registry that echoes the credentials it was
// sent into its error message does not get them into nestattest's output.
func TestSecretsStayOutOfErrors(t *testing.T) {
	const user, password = "robot", "s3cr3t-registry-password"
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if got == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/v2/" {
			return
		}
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(got, "Basic "))
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"errors":[{"code":"UNKNOWN","message":"you sent %s, that is %s"}]}`, got, raw)
	}))
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	dockerConfig := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, basic)
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"tree", "--retries", "0", host + "/org/app:latest"},
		{"verify", "--key", newKeyPair(t, "cosign").pub, "--insecure-ignore-tlog", "-o", "json", "--retries", "0", host + "/org/app:latest"},
	} {
		r := harness.RunEnv(t, []string{"DOCKER_CONFIG=" + dockerConfig}, harness.Binary(t), args...)
		out := r.Stdout + r.Stderr
		if r.Code != 1 || !strings.Contains(out, "you sent Basic REDACTED") {
			t.Errorf("%s: exit %d, want 1 with the registry's message, redacted\n%s", args[0], r.Code, out)
		}
		if strings.Contains(out, password) || strings.Contains(out, basic) {
			t.Errorf("%s: the registry password reached the output:\n%s", args[0], out)
		}
	}
}
