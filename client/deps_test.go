package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: an analyst's program carries the API, not the network:
// the client links neither the daemons (coordinator, node) nor the
// cryptography (Lattigo), the DP library, Badger or memberlist. Of crypto/
// it links only crypto/envelope (standard library only), which signs the
// analyst's queries.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/fedstat/fedstat/coordinator", "github.com/fedstat/fedstat/node", "github.com/fedstat/fedstat/crypto",
			"github.com/tuneinsight/lattigo", "github.com/google/differential-privacy", "github.com/dgraph-io/badger", "github.com/hashicorp/memberlist"} {
			if dep == "github.com/fedstat/fedstat/crypto/envelope" {
				continue // standard library only: the client signs queries with it
			}
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("client depends on %s", dep)
			}
		}
	}
}
