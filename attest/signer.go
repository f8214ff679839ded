package attest

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/nestattest/nestattest/registry"
)

// Signer signs payloads with one key and checks signatures made with it.
// sigstore's signature.SignerVerifier satisfies it, so a KMS or hardware key
// plugs in as well as a cosign key file.
type Signer interface {
	SignMessage(message io.Reader, opts ...signature.SignOption) ([]byte, error)
	VerifySignature(signature, message io.Reader, opts ...signature.VerifyOption) error
	PublicKey(opts ...signature.PublicKeyOption) (crypto.PublicKey, error)
}

// Files of Tekton Chains' signing-secrets layout.
const (
	ChainsKeyFile      = "cosign.key"
	ChainsPasswordFile = "cosign.password"
)

// KeySource says where a cosign private key and its password are.
type KeySource struct {
	// Path is a cosign key file, or a directory in Tekton Chains'
	// signing-secrets layout holding cosign.key and cosign.password.
	Path string
	// Password returns the key's password when the layout does not hold
	// one (environment, file or terminal, as the caller decides).
	Password func() ([]byte, error)
}

// Load reads and decrypts the key: once per run. The password is
// registered with registry.Secret, so no message ever shows it.
func (k KeySource) Load() (Signer, error) {
	keyPath, pass, err := k.resolve()
	if err != nil {
		return nil, err
	}
	registry.Secret(string(pass))
	pem, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	sv, err := cosign.LoadPrivateKey(pem, pass, nil)
	if err != nil {
		if strings.Contains(err.Error(), "decrypt") {
			return nil, fmt.Errorf("%w: %s: wrong password, or the key is corrupt (decryption failed)", ErrKey, keyPath)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrKey, keyPath, err)
	}
	return sv, nil
}

// resolve finds the key file and its password.
func (k KeySource) resolve() (string, []byte, error) {
	if k.Path == "" {
		return "", nil, fmt.Errorf("%w: no key given", ErrKey)
	}
	fi, err := os.Stat(k.Path)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if !fi.IsDir() {
		pass, err := k.password()
		return k.Path, pass, err
	}
	keyPath := filepath.Join(k.Path, ChainsKeyFile)
	pass, err := os.ReadFile(filepath.Join(k.Path, ChainsPasswordFile))
	switch {
	case err == nil:
		return keyPath, pass, nil
	case errors.Is(err, os.ErrNotExist):
		pass, err = k.password()
		return keyPath, pass, err
	}
	return "", nil, fmt.Errorf("%w: %w", ErrKey, err)
}

func (k KeySource) password() ([]byte, error) {
	if k.Password == nil {
		return nil, nil
	}
	pass, err := k.Password()
	if err != nil {
		return nil, fmt.Errorf("%w: password: %w", ErrKey, err)
	}
	return pass, nil
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
