package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/test/stattest"
)

// TestStatsModelRules runs the shared model cases (stattest.ModelCases,
// which the coordinator's TestStatsModelRules runs too) through `fedstat
// stats METHOD`: a refused model is a usage error naming the rule, before
// any query; an accepted one goes on to submit its first round (here to a
// coordinator that is not there).
func TestStatsModelRules(t *testing.T) {
	for _, env := range []string{envCoordinator, envHTTP, envCert, envKey, envCA, envToken} {
		t.Setenv(env, "")
	}
	schema := filepath.Join(t.TempDir(), "trial.toml")
	if err := os.WriteFile(schema, []byte(stattest.ModelSchema), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range stattest.ModelCases {
		args := []string{"stats", c.Method, "--schema", schema, "--table", "trial", "--quiet",
			"--http", "http://127.0.0.1:1", "--token", "tok"}
		switch c.Method {
		case "km", "cox":
			args = append(args, "--time", "time", "--status", "status", "--event", "2")
		}
		if c.Outcome != "" {
			args = append(args, "--outcome", c.Outcome)
		}
		for _, x := range c.Covariates {
			args = append(args, "--x", x)
		}
		for _, f := range c.Factors {
			args = append(args, "--factor", f)
		}
		if c.Rounds != 0 {
			args = append(args, "--rounds", strconv.Itoa(c.Rounds))
		}
		cmd := newRootCommand()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		var ue *usageError
		switch {
		case c.Refused != "" && (!errors.As(err, &ue) || !strings.Contains(err.Error(), c.Refused)):
			t.Errorf("%s: %v, want a usage error (%s)", c.Name, err, c.Refused)
		case c.Refused == "" && !errors.Is(err, client.ErrUnavailable):
			t.Errorf("%s: %v, want the model accepted and its first round submitted", c.Name, err)
		}
	}
}
