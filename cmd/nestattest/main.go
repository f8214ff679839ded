// Command nestattest signs, attests and verifies trees of OCI artifacts that
// span nested registry namespaces. See the README for the convention and
// the commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// envCPUProfile names a file to write a CPU profile of the run to, for
// benchmarks (docs/testing.md): NESTATTEST_CPUPROFILE=sign.pprof.
const envCPUProfile = "NESTATTEST_CPUPROFILE"

func main() {
	stopProfile := cpuProfile(os.Getenv(envCPUProfile))
	ctx, stop := interruptible(context.Background())
	code := Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	stopProfile()
	os.Exit(code)
}

// cpuProfile starts a CPU profile into path, if one is named, and returns
// what stops it.
func cpuProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nestattest: %s=%s: %v\n", envCPUProfile, path, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
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
