package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/registry"
)

// Exit codes scripts can rely on.
const (
	ExitOK     = 0 // everything done and, for verify, every node passed
	ExitFailed = 1 // some nodes failed, or the tree could not be read
	ExitUsage  = 2 // bad flags, arguments, references, keys or passwords
)

// usageError marks an error as bad input: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// errFailed ends a run that completed but left nodes failed or unverified:
// exit code 1, the details already printed.
var errFailed = errors.New("some nodes failed")

// errInterrupted ends a run stopped by a signal whose one line, and partial
// report, were already written.
var errInterrupted = errors.New("interrupted")

// interruptError is the cause of a run's context cancelled by a signal.
type interruptError struct{ sig syscall.Signal }

func (e *interruptError) Error() string { return "interrupted by " + e.sig.String() }

// exitCodeOf is the shell's exit code for a signal: 128 + its number (130
// for SIGINT, 143 for SIGTERM, as Tekton stops a step).
func exitCodeOf(sig syscall.Signal) int { return 128 + int(sig) }

// interruption returns the signal that cancelled ctx, if one did.
func interruption(ctx context.Context) (*interruptError, bool) {
	var ie *interruptError
	ok := errors.As(context.Cause(ctx), &ie)
	return ie, ok
}

// streams are where a command reads and writes, and the secrets of the run
// that every write is redacted of.
type streams struct {
	in       io.Reader
	out, err io.Writer
	// errFile is stderr when it is a terminal's file, for progress.
	errFile *os.File
	secrets *registry.Secrets
}

// Execute runs the command line args and returns the exit code. stdin is
// what `--from -` and a piped key password read.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	secrets := &registry.Secrets{}
	s := streams{in: stdin, out: secrets.Writer(stdout), err: secrets.Writer(stderr), secrets: secrets}
	if f, ok := stderr.(*os.File); ok {
		s.errFile = f
	}
	root := newRoot(s)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if ie, ok := interruption(ctx); ok && err != nil {
		if !errors.Is(err, errInterrupted) {
			fmt.Fprintf(s.err, "interrupted (%s); nothing more was started; re-run to finish\n", ie.sig)
		}
		return exitCodeOf(ie.sig)
	}
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errFailed):
		return ExitFailed
	}
	fmt.Fprintln(s.err, "Error:", err.Error())
	if isUsage(err) {
		return ExitUsage
	}
	return ExitFailed
}

// isUsage reports bad input: our usage errors, and cobra's unknown commands.
func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command")
}

func newRoot(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "nestattest",
		Short: "Sign, attest and verify trees of OCI artifacts across nested repositories",
		Long: `nestattest composes one parent index for a registry namespace whose entries
point into scoped child repositories, walks such trees across those
repositories, signs and attests every node where cosign stores them, and
verifies whole trees.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newTree(s), newSign(s), newVerify(s), newPropagate(s), newGenerateKeyPair(s), newDemo(s), newVersion(s), newCatalog(s), newPlan(s))
	return root
}

// exactArgs is cobra.ExactArgs with an error that exits with ExitUsage.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d (see --help)", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}
