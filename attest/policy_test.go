package attest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/attest/statement"
	"github.com/sigstore/sigstore-go/pkg/root"
)

// TestTrustOptionsRefused: options that exclude each other, or fall short,
// are refused before anything is loaded, with an error that names them as
// the flags a user gave (after the command's prefix) and says how to go
// on.
func TestTrustOptionsRefused(t *testing.T) {
	const missing = "/nonexistent/cosign.pub" // loading it would fail with ErrKey
	loaded := 0
	load := func(context.Context, string) (crypto.PublicKey, error) { loaded++; return nil, ErrKey }
	for _, tc := range []struct {
		name    string
		opts    TrustOptions
		prefix  string
		options []string
		want    []string
	}{
		{name: "nobody", options: []string{OptionKey, OptionIdentity, OptionIssuer},
			want: []string{"say whom to trust: --key, or --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]"}},
		{name: "nobody, prefixed", prefix: "source-", options: []string{OptionKey, OptionIdentity, OptionIssuer},
			want: []string{"--source-key, or --source-certificate-identity[-regexp] and --source-certificate-oidc-issuer[-regexp]"}},
		{name: "key and identity", opts: TrustOptions{Key: missing, Identity: CertificateIdentity{Subject: "a@example.com", Issuer: "https://issuer.example"}},
			options: []string{OptionKey, OptionIdentity, OptionIssuer},
			want: []string{"--key and --certificate-identity/--certificate-oidc-issuer exclude each other",
				"give --key to trust signatures by a key, or --certificate-identity and --certificate-oidc-issuer to trust keyless signatures"}},
		{name: "key and identity, prefixed", prefix: "source-", opts: TrustOptions{Key: missing, Identity: CertificateIdentity{SubjectRegexp: ".*"}},
			options: []string{OptionKey, OptionIdentityRegexp},
			want:    []string{"--source-key and --source-certificate-identity-regexp exclude each other", "give --source-key to trust"}},
		{name: "identity twice", opts: TrustOptions{Identity: CertificateIdentity{Subject: "a@example.com", SubjectRegexp: ".*", Issuer: "https://issuer.example"}},
			options: []string{OptionIdentity, OptionIdentityRegexp},
			want:    []string{"--certificate-identity and --certificate-identity-regexp exclude each other: give one"}},
		{name: "issuer twice", opts: TrustOptions{Identity: CertificateIdentity{Subject: "a@example.com", Issuer: "https://issuer.example", IssuerRegexp: ".*"}},
			options: []string{OptionIssuer, OptionIssuerRegexp},
			want:    []string{"--certificate-oidc-issuer and --certificate-oidc-issuer-regexp exclude each other: give one"}},
		{name: "no identity", opts: TrustOptions{Identity: CertificateIdentity{Issuer: "https://issuer.example"}},
			options: []string{OptionIdentity, OptionIdentityRegexp},
			want:    []string{"keyless verification needs the certificate's identity: give --certificate-identity or --certificate-identity-regexp"}},
		{name: "no issuer", prefix: "source-", opts: TrustOptions{Identity: CertificateIdentity{Subject: "a@example.com"}},
			options: []string{OptionIssuer, OptionIssuerRegexp},
			want:    []string{"keyless verification needs the certificate's OIDC issuer: give --source-certificate-oidc-issuer or --source-certificate-oidc-issuer-regexp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := 0
			loaded = 0
			tc.opts.TrustedMaterial = func() (root.TrustedMaterial, error) { asked++; return &root.TrustedRoot{}, nil }
			tc.opts.LoadKey = load
			_, err := NewTrust(context.Background(), tc.opts)
			var oe *OptionError
			if !errors.As(err, &oe) || !errors.Is(err, ErrOptions) {
				t.Fatalf("error %v, want an *OptionError wrapping ErrOptions", err)
			}
			if errors.Is(err, ErrKey) || asked != 0 || loaded != 0 {
				t.Errorf("loaded before refusing: %v, key loaded %d times, trusted material asked %d times", err, loaded, asked)
			}
			if !slices.Equal(oe.Options, tc.options) {
				t.Errorf("options %q, want %q", oe.Options, tc.options)
			}
			oe.Prefix = tc.prefix
			for _, want := range tc.want {
				if !strings.Contains(oe.Error(), want) {
					t.Errorf("error %q, want it to say %q", oe.Error(), want)
				}
			}
		})
	}
}

// TestNewTrust: a key is loaded, and the trusted material asked for only
// when the trust needs some; a key that cannot be loaded is its loader's
// error (identity.LoadPublicKey's wrap ErrKey).
func TestNewTrust(t *testing.T) {
	ctx := context.Background()
	const pub = "cosign.pub"
	key := testPublicKey(t)
	load := func(_ context.Context, ref string) (crypto.PublicKey, error) {
		if ref != pub {
			return nil, fmt.Errorf("%w: %s: no such file", ErrKey, ref)
		}
		return key, nil
	}
	tr := &root.TrustedRoot{}
	for _, tc := range []struct {
		name  string
		opts  TrustOptions
		asked bool
	}{
		{"key, no log", TrustOptions{Key: pub, IgnoreTlog: true}, false},
		{"key, log", TrustOptions{Key: pub}, true},
		{"key, timestamps", TrustOptions{Key: pub, IgnoreTlog: true, UseSignedTimestamps: true}, true},
		{"keyless", TrustOptions{Identity: CertificateIdentity{SubjectRegexp: ".*", Issuer: "https://issuer.example"}, IgnoreTlog: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := 0
			tc.opts.TrustedMaterial = func() (root.TrustedMaterial, error) { asked++; return tr, nil }
			tc.opts.LoadKey = load
			trust, err := NewTrust(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if (asked == 1) != tc.asked || (trust.TrustedMaterial != nil) != tc.asked {
				t.Errorf("trusted material asked %d times, held %v; want asked %v", asked, trust.TrustedMaterial != nil, tc.asked)
			}
			if (trust.Key != nil) != (tc.opts.Key != "") || (trust.Key != nil && trust.Key != key) || (trust.Identity != nil) != (tc.opts.Key == "") {
				t.Errorf("key %v, identity %v", trust.Key, trust.Identity)
			}
		})
	}
	if _, err := NewTrust(ctx, TrustOptions{Key: "missing.pub", LoadKey: load, IgnoreTlog: true}); !errors.Is(err, ErrKey) {
		t.Errorf("a key that is not there: %v, want ErrKey", err)
	}
	if _, err := NewTrust(ctx, TrustOptions{Key: pub, IgnoreTlog: true}); err == nil || !strings.Contains(err.Error(), "needs LoadKey") {
		t.Errorf("a key and no LoadKey: %v, want it refused", err)
	}
	failed := errors.New("no TUF today")
	if _, err := NewTrust(ctx, TrustOptions{Key: pub, LoadKey: load, TrustedMaterial: func() (root.TrustedMaterial, error) { return nil, failed }}); !errors.Is(err, failed) {
		t.Errorf("trusted material that cannot be read: %v, want its error", err)
	}
}

// TestTrustValidate: a Trust built by hand is refused as NewTrust refuses
// its options, and when it needs trusted material it lacks; NewVerifier
// refuses it too.
func TestTrustValidate(t *testing.T) {
	key := testPublicKey(t)
	id := &CertificateIdentity{Subject: "a@example.com", Issuer: "https://issuer.example"}
	for _, tc := range []struct {
		name  string
		trust Trust
		want  string
	}{
		{"key and identity", Trust{Key: key, Identity: id, IgnoreTlog: true}, "--key and --certificate-identity/--certificate-oidc-issuer exclude each other"},
		{"log without trusted root", Trust{Key: key}, "give it with --trusted-root, or do not check them with --insecure-ignore-tlog"},
		{"timestamps without trusted root", Trust{Key: key, IgnoreTlog: true, UseSignedTimestamps: true}, "--use-signed-timestamps needs the trusted root"},
		{"keyless without trusted root", Trust{Identity: id, IgnoreTlog: true}, "keyless verification needs the trusted root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.trust.Validate()
			if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want ErrOptions saying %q", err, tc.want)
			}
			if _, err = NewVerifier(tc.trust); !errors.Is(err, ErrOptions) {
				t.Errorf("NewVerifier: %v, want ErrOptions", err)
			}
		})
	}
	if err := (Trust{Key: key, IgnoreTlog: true}).Validate(); err != nil {
		t.Errorf("a key without a log: %v", err)
	}
}

// TestRequirementsValidate: a predicate type that is no cosign name nor a
// URI is refused naming --type; an annotation of the root beside
// RequireRoot, which would overwrite it, is refused naming both flags.
func TestRequirementsValidate(t *testing.T) {
	err := Requirements{Types: []string{"slsaprovenance1", "provenance?"}}.Validate()
	var oe *OptionError
	if !errors.As(err, &oe) || !errors.Is(err, ErrPredicate) || !errors.Is(err, ErrOptions) || !slices.Equal(oe.Options, []string{OptionType}) || !strings.HasPrefix(err.Error(), `--type: `) || !strings.Contains(err.Error(), `"provenance?"`) {
		t.Errorf("bad type: %v", err)
	}
	err = Requirements{Annotations: map[string]string{statement.AnnotationRoot: "x"}, RequireRoot: true}.Validate()
	if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), "--annotations "+statement.AnnotationRoot+"=… and --require-root exclude each other") {
		t.Errorf("root annotation and RequireRoot: %v", err)
	}
	for _, ok := range []Requirements{{}, {Types: []string{"spdxjson", "https://example.com/predicate/v1"}, Annotations: map[string]string{statement.AnnotationRoot: "x"}}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// testPublicKey is a fresh ECDSA P-256 public key.
func testPublicKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv.Public()
}
