package identity

import (
	"context"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/blob"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/cosign/kubernetes"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/nestattest/nestattest/attest"

	// The KMS providers cosign registers, so --key takes the same URIs.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)

// Files of Tekton Chains' signing-secrets layout.
const (
	ChainsKeyFile      = "cosign.key"
	ChainsPasswordFile = "cosign.password"
)

// Key reference schemes besides the KMS providers.
const (
	schemeEnv = "env://"
	schemeK8s = "k8s://"
)

// KeyRefHelp lists the key references LoadKey and LoadPublicKey take.
const KeyRefHelp = "a cosign key file, a Tekton Chains signing-secrets directory (cosign.key, cosign.password), env://VAR, k8s://NAMESPACE/SECRET, or a KMS key (awskms://, gcpkms://, azurekms://, hashivault://)"

// LoadKey loads the signing key ref names, once per run, taking the same
// references as cosign's --key: a cosign key file, a directory in Tekton
// Chains' signing-secrets layout, env://VAR (the key's PEM in a variable),
// k8s://NAMESPACE/SECRET (cosign.key and cosign.password of a Secret), or
// a KMS key URI, signed with remotely. password is asked only for an
// encrypted key whose password the layout does not hold. A public key is
// refused before any password is asked.
func LoadKey(ctx context.Context, ref string, password func() ([]byte, error)) (*KeySigner, error) {
	sv, err := loadSignerVerifier(ctx, ref, password)
	if err != nil {
		return nil, err
	}
	return NewKeySigner(ctx, sv, ref)
}

func loadSignerVerifier(ctx context.Context, ref string, password func() ([]byte, error)) (signature.SignerVerifier, error) {
	switch scheme := schemeOf(ref); {
	case ref == "":
		return nil, fmt.Errorf("%w: no key given", attest.ErrKey)
	case scheme == schemeEnv:
		name := strings.TrimPrefix(ref, schemeEnv)
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: %s: the variable %s is not set", attest.ErrKey, ref, name)
		}
		return privateKey(ref, []byte(v), password)
	case scheme == schemeK8s:
		s, err := kubernetes.GetKeyPairSecret(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", attest.ErrKey, ref, err)
		}
		pass := s.Data[ChainsPasswordFile]
		return privateKey(ref, s.Data[ChainsKeyFile], func() ([]byte, error) { return pass, nil })
	case isKMS(scheme):
		sv, err := kms.Get(ctx, ref, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", attest.ErrKey, ref, err)
		}
		return sv, nil
	case scheme != "":
		return nil, fmt.Errorf("%w: %s: unknown key reference scheme %q; want %s", attest.ErrKey, ref, scheme, KeyRefHelp)
	}
	return fileKey(ref, password)
}

// fileKey loads a key file or a Chains signing-secrets directory.
func fileKey(path string, password func() ([]byte, error)) (signature.SignerVerifier, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; want %s", attest.ErrKey, path, KeyRefHelp)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", attest.ErrKey, err)
	}
	if fi.IsDir() {
		raw, err := os.ReadFile(filepath.Join(path, ChainsPasswordFile))
		switch {
		case err == nil:
			password = func() ([]byte, error) { return raw, nil }
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%w: %w", attest.ErrKey, err)
		}
		path = filepath.Join(path, ChainsKeyFile)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", attest.ErrKey, err)
	}
	return privateKey(path, raw, password)
}

// privateKey decrypts a cosign private key, asking for the password only
// once the PEM is known to be an encrypted private key.
func privateKey(where string, raw []byte, password func() ([]byte, error)) (signature.SignerVerifier, error) {
	block, _ := pem.Decode(raw)
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w: %s is not PEM; want %s", attest.ErrKey, where, KeyRefHelp)
	case block.Type == "PUBLIC KEY":
		return nil, fmt.Errorf("%w: %s is a public key; signing needs the private key (cosign.key) or a KMS key", attest.ErrKey, where)
	case block.Type != cosign.CosignPrivateKeyPemType && block.Type != cosign.SigstorePrivateKeyPemType:
		return nil, fmt.Errorf("%w: %s holds a %q PEM block; want an encrypted cosign private key (cosign generate-key-pair, or cosign import-key-pair for other keys)", attest.ErrKey, where, block.Type)
	}
	var pass []byte
	if password != nil {
		var err error
		if pass, err = password(); err != nil {
			return nil, fmt.Errorf("%w: password for %s: %w", attest.ErrKey, where, err)
		}
	}
	sv, err := cosign.LoadPrivateKey(raw, pass, nil)
	if err != nil {
		if strings.Contains(err.Error(), "decrypt") {
			return nil, fmt.Errorf("%w: %s: %w", attest.ErrKey, where, attest.ErrKeyPassword)
		}
		return nil, fmt.Errorf("%w: %s: %v", attest.ErrKey, where, err)
	}
	return sv, nil
}

// LoadPublicKey loads the public key ref names, taking the same references
// as cosign verify's --key: a PEM file or URL, env://VAR, k8s://NAMESPACE/SECRET
// (cosign.pub) or a KMS key URI (its public key is fetched once).
func LoadPublicKey(ctx context.Context, ref string) (crypto.PublicKey, error) {
	var raw []byte
	var err error
	switch scheme := schemeOf(ref); {
	case ref == "":
		return nil, fmt.Errorf("%w: no key given", attest.ErrKey)
	case isKMS(scheme):
		sv, err := kms.Get(ctx, ref, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", attest.ErrKey, ref, err)
		}
		pub, err := sv.PublicKey(options.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: public key: %v", attest.ErrKey, ref, err)
		}
		return pub, nil
	case scheme == schemeK8s:
		s, kerr := kubernetes.GetKeyPairSecret(ctx, ref)
		if kerr != nil {
			return nil, fmt.Errorf("%w: %s: %v", attest.ErrKey, ref, kerr)
		}
		raw = s.Data["cosign.pub"]
	case scheme == "" || scheme == schemeEnv || scheme == "http://" || scheme == "https://":
		raw, err = blob.LoadFileOrURL(ref)
	default:
		return nil, fmt.Errorf("%w: %s: unknown key reference scheme %q; want a public key file or URL, env://VAR, k8s://NAMESPACE/SECRET, or a KMS key", attest.ErrKey, ref, scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", attest.ErrKey, ref, err)
	}
	if b, _ := pem.Decode(raw); b != nil && strings.Contains(b.Type, "PRIVATE KEY") {
		return nil, fmt.Errorf("%w: %s is a private key; verify takes the public key (cosign.pub)", attest.ErrKey, ref)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a PEM public key: %v", attest.ErrKey, ref, err)
	}
	return pub, nil
}

// schemeOf returns "scheme://" of a reference, or "".
func schemeOf(ref string) string {
	if i := strings.Index(ref, "://"); i > 0 && !strings.ContainsAny(ref[:i], "/\\.") {
		return ref[:i+3]
	}
	return ""
}

func isKMS(scheme string) bool {
	for _, p := range kms.SupportedProviders() {
		if scheme == p {
			return true
		}
	}
	return false
}

// GenerateKeyPair writes a cosign key pair, <prefix>.key encrypted with the
// password and <prefix>.pub, refusing to overwrite either file.
func GenerateKeyPair(prefix string, password func(bool) ([]byte, error)) (keyPath, pubPath string, err error) {
	keyPath, pubPath = prefix+".key", prefix+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return "", "", fmt.Errorf("%s exists; refusing to overwrite it", p)
		}
	}
	keys, err := cosign.GenerateKeyPair(password)
	if err != nil {
		return "", "", err
	}
	if err := writeNew(keyPath, keys.PrivateBytes, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, keys.PublicBytes, 0o644); err != nil {
		os.Remove(keyPath)
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
