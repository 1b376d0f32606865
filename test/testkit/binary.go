package testkit

import (
	"fmt"
	"os/exec"
	"path/filepath"
)

// BuildBinary builds cmd/fedstat into dir and returns the binary's path, for
// tests that run a network of processes (ServeOptions.Binary).
func BuildBinary(dir string) (string, error) { return BuildBinaryTags(dir, "") }

// BuildBinaryTags is BuildBinary with build tags (comma-separated), e.g.
// "fedstat_testhooks" for the fault tests' hooks (cmd/fedstat/internal/daemon).
func BuildBinaryTags(dir, tags string) (string, error) {
	bin := filepath.Join(dir, "fedstat")
	args := []string{"build", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	if out, err := exec.Command("go", append(args, "github.com/fedstat/fedstat/cmd/fedstat")...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}
