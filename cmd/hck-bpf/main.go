// Command hck-bpf finds TCP connections stuck in closing states and destroys
// them inside the kernel, by socket cookie, without killing their process.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes, the scripts' contract.
const (
	exitOK      = 0 // all hung connections destroyed, or none found
	exitFailure = 1 // some could not be destroyed, or hck-bpf could not run
	exitUsage   = 2 // bad flags or configuration (--pin-dir included): nothing was done
)

// usageError marks bad input: exit 2, nothing loaded or destroyed.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// errFailed reports that a sweep ran but some connections survived it; the
// details are already logged.
var errFailed = errors.New("some hung connections could not be destroyed")

// Main runs hck-bpf with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(normalizeArgs(args, shapeOf(root)))
	err := root.Execute()
	var ue usageError
	var ce *tracking.ConfigError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFailed), errors.Is(err, errLogLost):
		return exitFailure
	case errors.As(err, &ue) || errors.As(err, &ce) || isFlagError(err):
		fmt.Fprintf(stderr, "hck-bpf: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "hck-bpf: %v\n", err)
		return exitFailure
	}
}
