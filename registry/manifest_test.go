package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// hostile serves one fixed answer for every manifest request.
func hostile(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func digestStr(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func testClient() *Client { return NewClient(Options{Retries: 2, Backoff: time.Millisecond}) }

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGetManifestRefuses(t *testing.T) {
	good := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	evil := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[ ]}`)
	for _, tc := range []struct {
		name    string
		ref     string
		handler http.HandlerFunc
		want    error
	}{
		{"content for another digest", "org/app@" + digestStr(good), func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", string(types.OCIImageIndex))
			_, _ = w.Write(evil)
		}, ErrDigestMismatch},
		{"tag with a lying Docker-Content-Digest", "org/app:latest", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Docker-Content-Digest", digestStr(good))
			_, _ = w.Write(evil)
		}, ErrDigestMismatch},
		{"announced over the limit", "org/app:latest", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(MaxManifestBytes+1))
			_, _ = w.Write(make([]byte, MaxManifestBytes+1))
		}, ErrTooLarge},
		{"streamed over the limit", "org/app:latest", func(w http.ResponseWriter, _ *http.Request) {
			w.(http.Flusher).Flush() // chunked: no Content-Length
			for range 5 {
				_, _ = w.Write(make([]byte, 1<<20))
			}
		}, ErrTooLarge},
		{"not found", "org/app:latest", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
		}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := hostile(t, tc.handler)
			_, err := testClient().GetManifest(context.Background(), mustRef(t, host+"/"+tc.ref), MaxManifestBytes)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestGetManifestRetriesBrokenBodies(t *testing.T) {
	good := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	var calls atomic.Int32
	host := hostile(t, func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Length", fmt.Sprint(len(good)))
			_, _ = w.Write(good[:10]) // then the handler returns: a short body
			return
		}
		_, _ = w.Write(good)
	})
	f, err := testClient().GetManifest(context.Background(), mustRef(t, host+"/org/app@"+digestStr(good)), MaxManifestBytes)
	if err != nil {
		t.Fatal(err)
	}
	if string(f.Raw) != string(good) || calls.Load() != 2 {
		t.Errorf("got %q after %d calls", f.Raw, calls.Load())
	}
}

func TestRefusesRedirectToAnotherHost(t *testing.T) {
	other := hostile(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{}`))
	})
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+other+r.URL.Path, http.StatusTemporaryRedirect)
	})
	_, err := testClient().GetManifest(context.Background(), mustRef(t, host+"/org/app:latest"), MaxManifestBytes)
	if !errors.Is(err, ErrRedirect) {
		t.Fatalf("error %v, want a refused redirect", err)
	}
}

// TestErrorBodyCutShort: a 404 whose body breaks off is still "not found",
// and a 401 still "denied": the status is the answer, not the body.
func TestErrorBodyCutShort(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{{http.StatusNotFound, ErrNotFound}, {http.StatusForbidden, ErrDenied}} {
		host := hostile(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "200")
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNK`))
			// Returning leaves the answer short of its Content-Length: the
			// server closes the connection, and the client reads EOF early.
		})
		_, err := testClient().GetManifest(context.Background(), mustRef(t, host+"/org/app:sha256-abc.att"), MaxManifestBytes)
		if !errors.Is(err, tc.want) {
			t.Errorf("HTTP %d cut short: %v; want %v", tc.status, err, tc.want)
		}
	}
}

// TestUploadMonolithic: a registry that takes the blob with the POST gets
// one request; one that only opens an upload (202) gets the body again with
// the PUT that closes it, and from then on a POST without the blob. Either
// way it holds exactly the bytes.
func TestUploadMonolithic(t *testing.T) {
	body := []byte(`{"payload":"x"}`)
	for _, monolithic := range []bool{true, false} {
		var requests []string
		var got []byte
		host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
			requests = append(requests, r.Method+" "+r.URL.Query().Get("digest"))
			b := make([]byte, r.ContentLength)
			_, _ = io.ReadFull(r.Body, b)
			switch {
			case r.Method == http.MethodPost && monolithic:
				got = b
				w.WriteHeader(http.StatusCreated)
			case r.Method == http.MethodPost:
				w.Header().Set("Location", "/v2/org/app/blobs/uploads/u1")
				w.WriteHeader(http.StatusAccepted)
			case r.Method == http.MethodPut && r.URL.Path == "/v2/org/app/blobs/uploads/u1":
				got = b
				w.WriteHeader(http.StatusCreated)
			default:
				w.WriteHeader(http.StatusNotFound)
			}
		})
		repo, _ := name.NewRepository(host + "/org/app")
		c := testClient()
		d, err := c.Upload(context.Background(), repo, body)
		if err == nil {
			_, err = c.Upload(context.Background(), repo, body)
		}
		want := []string{"POST " + digestStr(body), "POST " + digestStr(body)}
		if !monolithic {
			want = []string{"POST " + digestStr(body), "PUT " + digestStr(body), "POST ", "PUT " + digestStr(body)}
		}
		if err != nil || d.String() != digestStr(body) || string(got) != string(body) || fmt.Sprint(requests) != fmt.Sprint(want) {
			t.Errorf("monolithic %v: %s %v, requests %q (want %q), stored %q", monolithic, d, err, requests, want, got)
		}
	}
}

// TestCertificateErrorNamesTheFix: a registry whose certificate the system
// does not trust fails with ErrCertificate and says how to trust it or
// skip the check; with Insecure the same registry answers.
func TestCertificateErrorNamesTheFix(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(s.Close)
	ref := mustRef(t, strings.TrimPrefix(s.URL, "https://")+"/org/app:latest")
	_, err := NewClient(Options{Retries: 1, Backoff: time.Millisecond}).GetManifest(context.Background(), ref, MaxManifestBytes)
	if !errors.Is(err, ErrCertificate) || !strings.Contains(err.Error(), "SSL_CERT_FILE") || !strings.Contains(err.Error(), "--allow-insecure-registry") {
		t.Errorf("untrusted certificate: %v", err)
	}
	_, err = NewClient(Options{Retries: 1, Backoff: time.Millisecond, Insecure: true}).GetManifest(context.Background(), ref, MaxManifestBytes)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("with Insecure: %v, want not found", err)
	}
}

// TestUploadFrom: a blob the registry mounts from another repository costs
// one request and no bytes; where the registry opens an upload instead, or
// refuses the mount, the blob is sent, and the next blob is uploaded
// without asking for a mount.
func TestUploadFrom(t *testing.T) {
	body := []byte(`{"dsse":"the same statement"}`)
	for _, tc := range []struct {
		name   string
		answer int // to the mount
		want   []string
	}{
		{"mounted", http.StatusCreated, []string{"POST mount=org/app1"}},
		{"upload opened instead", http.StatusAccepted, []string{"POST mount=org/app1", "PUT " + digestStr(body)}},
		{"mount refused", http.StatusNotFound, []string{"POST mount=org/app1", "POST " + digestStr(body)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var requests []string
			var got []byte
			host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				q := r.URL.Query()
				switch {
				case r.Method == http.MethodPost && q.Get("mount") != "":
					requests = append(requests, "POST mount="+q.Get("from"))
					if q.Get("mount") != digestStr(body) || len(b) != 0 {
						t.Errorf("mount of %s with %d bytes", q.Get("mount"), len(b))
					}
					if tc.answer == http.StatusAccepted {
						w.Header().Set("Location", "/v2/org/app2/blobs/uploads/u1")
					}
					w.WriteHeader(tc.answer)
				case r.Method == http.MethodPost:
					requests = append(requests, "POST "+q.Get("digest"))
					got = b
					w.WriteHeader(http.StatusCreated)
				case r.Method == http.MethodPut && r.URL.Path == "/v2/org/app2/blobs/uploads/u1":
					requests = append(requests, "PUT "+q.Get("digest"))
					got = b
					w.WriteHeader(http.StatusCreated)
				default:
					requests = append(requests, r.Method+" "+r.URL.Path)
					w.WriteHeader(http.StatusNotFound)
				}
			})
			from, _ := name.NewRepository(host + "/org/app1")
			repo, _ := name.NewRepository(host + "/org/app2")
			c := testClient()
			d, err := c.UploadFrom(context.Background(), repo, from, body)
			if err != nil || d.String() != digestStr(body) || fmt.Sprint(requests) != fmt.Sprint(tc.want) {
				t.Errorf("%s %v, requests %q, want %q", d, err, requests, tc.want)
			}
			if tc.answer != http.StatusCreated && string(got) != string(body) {
				t.Errorf("stored %q, want the blob", got)
			}
			// The next blob: mounted again where the registry mounts,
			// uploaded where it did not.
			requests = nil
			if _, err := c.UploadFrom(context.Background(), repo, from, body); err != nil {
				t.Fatal(err)
			}
			want := "[POST mount=org/app1]"
			if tc.answer != http.StatusCreated {
				want = "[POST " + digestStr(body) + "]"
			}
			if fmt.Sprint(requests) != want {
				t.Errorf("the next blob: requests %q, want %s", requests, want)
			}
		})
	}
}
