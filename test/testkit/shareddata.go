package testkit

import (
	"os"
	"testing"

	"github.com/fedstat/fedstat/internal/shareddata"
)

// SharedData returns the path of rel inside the shared reference data
// (internal/shareddata) for a test. When it is missing the test fails if
// CI=true and is skipped (saying why) otherwise.
func SharedData(tb testing.TB, rel string) string {
	tb.Helper()
	p, ok := shareddata.Path(rel)
	if ok {
		return p
	}
	msg := "shared data " + rel + " not found (looked for ../shared/data beside the repository, or $" + shareddata.EnvDir + ")"
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}
