package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest"
)

// envPassword is cosign's variable for the key password.
const envPassword = "COSIGN_PASSWORD"

// keyOptions say where the signing key and its password are.
type keyOptions struct {
	key          string
	passwordFile string
}

func (o *keyOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.key, "key", "",
		"cosign private key file, or a directory in Tekton Chains' signing-secrets layout (cosign.key, cosign.password)")
	cmd.Flags().StringVar(&o.passwordFile, "password-file", "",
		"file holding the key password (one trailing newline is dropped); else $"+envPassword+", else a prompt on a terminal")
}

// load decrypts the key once for the whole run.
func (o *keyOptions) load() (attest.Signer, error) {
	if o.key == "" {
		return nil, usagef("--key is required")
	}
	s, err := attest.KeySource{Path: o.key, Password: o.password}.Load()
	if err != nil {
		return nil, usageError{err}
	}
	return s, nil
}

// password reads the key password: --password-file, $COSIGN_PASSWORD, or
// a prompt when stdin is a terminal.
func (o *keyOptions) password() ([]byte, error) {
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return nil, err
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		return bytes.TrimSuffix(b, []byte("\r")), nil
	}
	if p, ok := os.LookupEnv(envPassword); ok {
		return []byte(p), nil
	}
	if cosign.IsTerminal() {
		return cosign.GetPassFromTerm(false)
	}
	return nil, errors.New("no password: set " + envPassword + " or --password-file")
}

func newGenerateKeyPair(s streams) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "generate-key-pair",
		Short: "Write a cosign key pair (cosign.key, cosign.pub), as cosign generate-key-pair does",
		Long: `generate-key-pair writes an encrypted cosign private key and its public key.
The password comes from $COSIGN_PASSWORD, or a prompt on a terminal. The
files are the ones cosign writes: cosign sign, cosign verify and Tekton
Chains use them as they are.`,
		Args: exactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			keyPath, pubPath, err := attest.GenerateKeyPair(prefix, passwordForNewKey)
			if err != nil {
				return usageError{err}
			}
			_, err = fmt.Fprintf(s.err, "Private key written to %s\nPublic key written to %s\n", keyPath, pubPath)
			return err
		},
	}
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "name of the key files: PREFIX.key and PREFIX.pub")
	return cmd
}

func passwordForNewKey(confirm bool) ([]byte, error) {
	if p, ok := os.LookupEnv(envPassword); ok {
		return []byte(p), nil
	}
	if cosign.IsTerminal() {
		return cosign.GetPassFromTerm(confirm)
	}
	return nil, errors.New("no password: set " + envPassword + " or run on a terminal")
}
