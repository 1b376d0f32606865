package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/buildinfo"
)

// TestVersion: fedstat --version prints the release line, fedstat version
// the details, as text and JSON, with the key libraries' versions from the
// build information.
func TestVersion(t *testing.T) {
	out, _, err := runForecast(t, "--version")
	if err != nil || !strings.HasPrefix(out, "fedstat "+buildinfo.Version+" (") {
		t.Errorf("fedstat --version: %v %q", err, out)
	}
	out, _, err = runForecast(t, "version")
	if err != nil || !strings.Contains(out, "github.com/tuneinsight/lattigo/v5 v5.0.7") || !strings.Contains(out, "commit") {
		t.Errorf("fedstat version: %v\n%s", err, out)
	}
	out, _, err = runForecast(t, "version", "--json")
	var bi buildinfo.Info
	if err != nil || json.Unmarshal([]byte(out), &bi) != nil || bi.Version != buildinfo.Version ||
		bi.Deps["github.com/google/differential-privacy/go/v3"] != "v3.0.0" || bi.GoVersion == "" {
		t.Errorf("fedstat version --json: %v\n%s", err, out)
	}
}
