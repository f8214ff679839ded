// Command nestattest signs, attests and verifies trees of OCI artifacts that
// span nested registry namespaces. See the README for the convention and
// the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := interruptible(context.Background())
	code := Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// interruptible returns a context cancelled by SIGINT or SIGTERM, its
// cause an *interruptError naming the signal. A second signal ends the
// process at once.
func interruptible(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(&interruptError{sig: s.(syscall.Signal)})
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			os.Exit(exitCodeOf(s.(syscall.Signal)))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}
