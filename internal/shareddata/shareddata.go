// Package shareddata locates the reference data sets that live beside the
// project (../shared/data relative to the repository root), for tests, the
// demo and benchmarks. The data is never copied into the repository. Tests
// use test/testkit.SharedData, which fails or skips when a set is missing.
package shareddata

import (
	"os"
	"path/filepath"
)

// EnvDir overrides where the data is looked for.
const EnvDir = "FEDSTAT_SHARED_DATA"

// Dir returns the shared data directory and whether it exists. It honours
// $FEDSTAT_SHARED_DATA, then looks for shared/data beside every parent of the
// working directory (so it works from any package directory and from the
// repository root).
func Dir() (string, bool) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, isDir(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "shared", "data")
		if isDir(cand) {
			return cand, true
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

// Path returns the path of rel inside the shared data directory and whether
// it exists.
func Path(rel string) (string, bool) {
	d, ok := Dir()
	if !ok {
		return "", false
	}
	p := filepath.Join(d, rel)
	_, err := os.Stat(p)
	return p, err == nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
