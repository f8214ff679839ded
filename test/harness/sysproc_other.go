//go:build !linux

package harness

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie a child's life to
// its parent's; cleanups still stop registries when tests end normally.
func dieWithParent(*exec.Cmd) {}
