package lab

import (
	"fmt"
	"os"
	"testing"
)

// RequiredEnv, set to 1, turns every "cannot run here" of a lab test into
// a failure. The project's test command sets it, so a machine missing a
// program (or a run without root) fails loudly instead of passing with
// the kernel tests quietly skipped; a plain `go test` as a user still
// skips.
const RequiredEnv = "ISPBALANCE_LAB_REQUIRED"

// Required reports whether lab tests must run.
func Required() bool { return os.Getenv(RequiredEnv) == "1" }

// SkipOrFail skips the test, or fails it when lab tests are required.
func SkipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		tb.Fatalf("%s (%s=1: lab tests may not be skipped; scripts/setup.sh installs what they need)", msg, RequiredEnv)
	}
	tb.Skip(msg)
}
