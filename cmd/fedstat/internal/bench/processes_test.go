package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedstat/fedstat/test/testkit"
)

// TestReadProc reads this process's CPU time: it grows with work done.
func TestReadProc(t *testing.T) {
	s0, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for t0 := time.Now(); time.Since(t0) < 100*time.Millisecond; {
		x++
	}
	s1, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := s1.cpu - s0.cpu; d < 30*time.Millisecond {
		t.Errorf("100 ms of spinning (%d turns) read as %s of CPU", x, d)
	}
	if _, err := readProc(-1); err == nil {
		t.Error("readProc(-1) did not fail")
	}
}

// TestRunProcessesSmall runs the smallest network of processes end to end,
// with profiles, so that `fedstat bench --processes` keeps working (figures
// come from the command, not from this test).
func TestRunProcessesSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts processes; skipped with -short")
	}
	dir := t.TempDir()
	bin, err := testkit.BuildBinary(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	prof := filepath.Join(dir, "profiles")
	r, err := RunProcesses(ctx, ProcessOptions{Binary: bin, Dir: filepath.Join(dir, "net"),
		Options: Options{Nodes: 2, Patients: 300, Repeats: 3, Queries: Queries[:1], Progress: func(s string) { t.Log(s) }},
		Idle:    time.Second, ProfileDir: prof, ProfileSeconds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Queries) != 1 {
		t.Fatalf("%d query cells", len(r.Queries))
	}
	c := r.Queries[0]
	if c.P50Ms <= 0 || c.CPUMsPerQuery <= 0 || c.NodeCPUMs <= 0 || c.NodeCPUMaxMs < c.NodeCPUMs || c.UploadBytesPerNode <= 0 || c.NodeWriteBytes <= 0 {
		t.Errorf("incomplete cell %+v", c)
	}
	if len(r.Profiles) != 4 {
		t.Errorf("profiles %v, want 4", r.Profiles)
	}
	for _, f := range r.Profiles {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
}
