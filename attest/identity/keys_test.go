package identity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestattest/nestattest/attest"
)

func TestLoadKey(t *testing.T) {
	ctx := context.Background()
	dir, pass := testKey(t)
	keyPath := filepath.Join(dir, "cosign.key")
	good := func() ([]byte, error) { return pass, nil }
	if _, err := LoadKey(ctx, keyPath, good); err != nil {
		t.Fatal(err)
	}
	_, err := LoadKey(ctx, keyPath, func() ([]byte, error) { return []byte("wrong"), nil })
	if !errors.Is(err, attest.ErrKey) || !strings.Contains(err.Error(), "wrong password") || strings.Contains(err.Error(), "wrong\"") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := LoadKey(ctx, filepath.Join(dir, "absent.key"), nil); !errors.Is(err, attest.ErrKey) {
		t.Errorf("absent key: %v", err)
	}
	asked := false
	ask := func() ([]byte, error) { asked = true; return pass, nil }
	if _, err := LoadKey(ctx, filepath.Join(dir, "cosign.pub"), ask); !errors.Is(err, attest.ErrKey) || !strings.Contains(err.Error(), "is a public key") || asked {
		t.Errorf("public key: %v (password asked: %v)", err, asked)
	}
	if _, err := LoadKey(ctx, "https://example.test/cosign.key", ask); !errors.Is(err, attest.ErrKey) || !strings.Contains(err.Error(), "unknown key reference scheme") || asked {
		t.Errorf("https key: %v", err)
	}

	// env://VAR holds the PEM; the password is asked for.
	t.Setenv("NESTATTEST_TEST_KEY", string(readFile(t, keyPath)))
	if _, err := LoadKey(ctx, "env://NESTATTEST_TEST_KEY", good); err != nil {
		t.Errorf("env key: %v", err)
	}
	if _, err := LoadKey(ctx, "env://NESTATTEST_TEST_UNSET", good); !errors.Is(err, attest.ErrKey) || !strings.Contains(err.Error(), "not set") {
		t.Errorf("unset env key: %v", err)
	}

	// Tekton Chains' signing-secrets layout: cosign.key and cosign.password.
	chains := t.TempDir()
	if err := os.WriteFile(filepath.Join(chains, ChainsKeyFile), readFile(t, keyPath), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chains, ChainsPasswordFile), pass, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(ctx, chains, nil); err != nil {
		t.Errorf("chains layout: %v", err)
	}

	if pub, err := LoadPublicKey(ctx, filepath.Join(dir, "cosign.pub")); err != nil || pub == nil {
		t.Errorf("public key: %v", err)
	}
	if _, err := LoadPublicKey(ctx, keyPath); !errors.Is(err, attest.ErrKey) || !strings.Contains(err.Error(), "is a private key") {
		t.Errorf("private key given to verify: %v", err)
	}

	if _, _, err := GenerateKeyPair(filepath.Join(dir, "cosign"), func(bool) ([]byte, error) { return pass, nil }); err == nil {
		t.Error("GenerateKeyPair overwrote an existing key")
	}
}
