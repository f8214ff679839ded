package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/identity"
)

// Variables cosign reads, read the same way.
const (
	envPassword   = "COSIGN_PASSWORD"
	envRepository = "COSIGN_REPOSITORY"
)

// keyOptions say where the signing key and its password are.
type keyOptions struct {
	key          string
	passwordFile string
}

func (o *keyOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.key, "key", "", "the signing key: "+identity.KeyRefHelp)
	cmd.Flags().StringVar(&o.passwordFile, "password-file", "",
		"file holding the key password (one trailing newline is dropped); else $"+envPassword+", a prompt on a terminal, or standard input")
}

// load loads the key once for the whole run. stdinFree says whether a
// password may be read from standard input.
func (o *keyOptions) load(ctx context.Context, s streams, stdinFree bool) (*identity.KeySigner, error) {
	if o.key == "" {
		return nil, usagef("--key is required")
	}
	var none bool // the password came from a standard input that held none
	signer, err := identity.LoadKey(ctx, o.key, func() ([]byte, error) {
		p, fromStdin, err := o.password(s, stdinFree)
		s.secrets.Add(string(p))
		none = fromStdin && err == nil && len(p) == 0
		return p, err
	})
	if none && errors.Is(err, attest.ErrKeyPassword) {
		return nil, usagef("%s is encrypted and no password was given: standard input is not a terminal and held none (a CI step, cron, `docker run` without -t); set $%s or pass --password-file", o.key, envPassword)
	}
	var u *attest.UnreachableError
	if errors.As(err, &u) {
		return nil, unreachableError{u: u}
	}
	if err != nil {
		return nil, usageError{err}
	}
	// Decrypting a cosign key runs scrypt over 64 MiB, garbage once the key
	// is read: returned to the system now, it does not set the heap's size
	// (the garbage collector's target) for the rest of the run.
	debug.FreeOSMemory()
	return signer, nil
}

// unattended says whether a --key is given and loading it asks the user
// nothing: its password, if it has one, is in --password-file or
// $COSIGN_PASSWORD.
func (o *keyOptions) unattended() bool {
	if o.key == "" {
		return false
	}
	_, env := os.LookupEnv(envPassword)
	return o.passwordFile != "" || env
}

// password reads the key password as cosign does: --password-file,
// $COSIGN_PASSWORD, a prompt when stdin is a terminal, else standard input
// (a piped password; empty for /dev/null or a closed stdin). fromStdin
// says the password was read from a standard input that is not a terminal.
func (o *keyOptions) password(s streams, stdinFree bool) (p []byte, fromStdin bool, err error) {
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return nil, false, err
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		return bytes.TrimSuffix(b, []byte("\r")), false, nil
	}
	if p, ok := os.LookupEnv(envPassword); ok {
		return []byte(p), false, nil
	}
	if terminal(s.in) {
		p, err := cosign.GetPassFromTerm(false)
		return p, false, err
	}
	if !stdinFree {
		return nil, false, errors.New("standard input carries --from -; give the password with $" + envPassword + " or --password-file")
	}
	b, err := io.ReadAll(io.LimitReader(s.in, 4096))
	return bytes.TrimSuffix(b, []byte("\n")), true, err
}

// terminal says whether in is the process's standard input and a terminal
// a password can be typed at. cosign.IsTerminal asks only for a character
// device, which /dev/null is too: a prompt there fails with "inappropriate
// ioctl for device".
func terminal(in io.Reader) bool {
	f, ok := in.(*os.File)
	return ok && f == os.Stdin && term.IsTerminal(int(f.Fd()))
}

// checkCosignRepository refuses $COSIGN_REPOSITORY: cosign would store and
// look for every signature there, while nestattest keeps each node's in the
// node's own repository, where cosign without it, Chains and policy engines
// look.
func checkCosignRepository() error {
	if v, ok := os.LookupEnv(envRepository); ok && v != "" {
		return usagef("$%s is set (%s): cosign would store and look for every signature there, but nestattest keeps each node's signatures in the node's own repository, where cosign without %s, Tekton Chains and policy engines look; unset it", envRepository, v, envRepository)
	}
	return nil
}

func newGenerateKeyPair(s streams) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "generate-key-pair",
		Short: "Write a cosign key pair (cosign.key, cosign.pub), as cosign generate-key-pair does",
		Long: `generate-key-pair writes an encrypted cosign private key and its public key.
The password comes from $COSIGN_PASSWORD, a prompt on a terminal, or
standard input. The files are the ones cosign writes: cosign sign, cosign
verify and Tekton Chains use them as they are.`,
		Args: exactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			keyPath, pubPath, err := identity.GenerateKeyPair(prefix, func(confirm bool) ([]byte, error) {
				return passwordForNewKey(s, confirm)
			})
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

func passwordForNewKey(s streams, confirm bool) ([]byte, error) {
	if p, ok := os.LookupEnv(envPassword); ok {
		return []byte(p), nil
	}
	if terminal(s.in) {
		return cosign.GetPassFromTerm(confirm)
	}
	b, err := io.ReadAll(io.LimitReader(s.in, 4096))
	return bytes.TrimSuffix(b, []byte("\n")), err
}
