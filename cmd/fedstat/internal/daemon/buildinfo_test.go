package daemon

import (
	"testing"

	"github.com/fedstat/fedstat/internal/buildinfo"
)

// TestBuildInfoMetric: every daemon's registry exports fedstat_build_info
// = 1 with the release version and the Go version as labels.
func TestBuildInfoMetric(t *testing.T) {
	mfs, err := newRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fedstat_build_info" {
			continue
		}
		m := mf.GetMetric()
		if len(m) != 1 || m[0].GetGauge().GetValue() != 1 {
			t.Fatalf("fedstat_build_info: %v", mf)
		}
		labels := map[string]string{}
		for _, l := range m[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != buildinfo.Version || labels["go_version"] == "" || labels["revision"] == "" {
			t.Errorf("fedstat_build_info labels %v", labels)
		}
		return
	}
	t.Fatal("no fedstat_build_info metric")
}
