// Command fedstat is the single binary of the fedstat network: demo,
// coordinator, node, analyst CLI and admin tools. It only parses flags and
// signals and calls into the packages that do the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/internal/buildinfo"
)

func main() {
	quietGlog()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "fedstat:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "fedstat:", err)
		os.Exit(1)
	}
}

// usageError marks errors in how the command was called (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "fedstat",
		Short: "Privacy-preserving federated analytics for health data",
		Long: `fedstat answers aggregate questions (counts, trends, means, regressions) across
hospitals, agencies and insurers without moving patient records. Each node keeps its
data, adds differentially private noise to its partial result and encrypts it under a
key the nodes hold together; the coordinator adds the ciphertexts without reading them
and the nodes decrypt only the total.

Start here:
  fedstat demo                 run a whole network on this machine and answer a query
  fedstat node import --data-dir DIR FILE...   load FHIR R4 or CSV records into a node
  fedstat node query --data-dir DIR "SQL"      exact local answer, for the node's admin
  fedstat version              which fedstat this is (commit, Go, key libraries)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Get().Short(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(commands()...)
	return root
}

// quietGlog configures glog, which the DP library pulls in: by default it
// would write .INFO/.WARNING files into the temporary folder. fedstat sends
// what glog says to stderr instead (errors only) and never creates files.
func quietGlog() {
	for name, value := range map[string]string{"logtostderr": "true", "stderrthreshold": "ERROR", "v": "0"} {
		if flag.Lookup(name) != nil {
			_ = flag.Set(name, value)
		}
	}
}
