// Package buildinfo says which fedstat this is: the release version, and
// what the Go toolchain recorded in the binary (runtime/debug.ReadBuildInfo):
// the commit it was built from, whether the work tree had changes, the Go
// version and the versions of the libraries whose behaviour matters to a
// network (the cryptography, the noise, the transport, the store, the
// gossip). `fedstat version`, the daemons' fedstat_build_info metric and
// the version a node announces all read it.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Version is fedstat's release version. Nodes announce it; a network whose
// members run different versions may plan queries differently (the
// plan fingerprint check names that).
const Version = "0.1.0"

// Key modules: the libraries whose versions an operator needs to see.
var Key = []string{
	"github.com/tuneinsight/lattigo/v5",
	"github.com/google/differential-privacy/go/v3",
	"google.golang.org/grpc",
	"github.com/hashicorp/memberlist",
	"github.com/dgraph-io/badger/v4",
	"github.com/gtank/ristretto255",
}

// Info is what the binary knows about its build.
type Info struct {
	Version   string `json:"version"`
	Module    string `json:"module,omitempty"` // the main module's version ("(devel)" from a work tree)
	Revision  string `json:"revision"`         // VCS commit, "unknown" when not recorded
	Time      string `json:"time,omitempty"`   // commit time
	Modified  bool   `json:"modified"`         // the work tree had changes
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// Deps are the versions of the Key modules linked in.
	Deps map[string]string `json:"deps"`
}

var (
	once sync.Once
	info Info
)

// Get returns the build information (computed once).
func Get() Info {
	once.Do(func() {
		info = Info{Version: Version, Revision: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Deps: map[string]string{}}
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		info.Module = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
		for _, d := range bi.Deps {
			for _, k := range Key {
				if d.Path == k {
					v := d.Version
					if d.Replace != nil {
						v += " => " + d.Replace.Path + " " + d.Replace.Version
					}
					info.Deps[k] = v
				}
			}
		}
	})
	return info
}

// Short is one line: "fedstat 0.1.0 (abc1234, modified) go1.26 linux/amd64".
func (i Info) Short() string {
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if i.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("fedstat %s (%s) %s %s", i.Version, rev, i.GoVersion, i.Platform)
}

// Long is Short and then one line per item.
func (i Info) Long() string {
	var b strings.Builder
	fmt.Fprintln(&b, i.Short())
	fmt.Fprintf(&b, "  commit      %s\n", i.Revision)
	if i.Time != "" {
		fmt.Fprintf(&b, "  commit time %s\n", i.Time)
	}
	fmt.Fprintf(&b, "  work tree   %s\n", map[bool]string{true: "modified", false: "clean (or not recorded)"}[i.Modified])
	if i.Module != "" {
		fmt.Fprintf(&b, "  module      %s\n", i.Module)
	}
	fmt.Fprintf(&b, "  go          %s %s\n", i.GoVersion, i.Platform)
	for _, k := range Key {
		if v, ok := i.Deps[k]; ok {
			fmt.Fprintf(&b, "  %s %s\n", k, v)
		}
	}
	return b.String()
}
