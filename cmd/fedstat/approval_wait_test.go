package main

import (
	"errors"
	"strings"
	"testing"
)

// TestQueryApprovalWaitFlag: --approval-wait takes whole seconds and is
// refused, as a usage error and before any connection, otherwise.
func TestQueryApprovalWaitFlag(t *testing.T) {
	for _, bad := range []string{"1500ms", "-1h", "500ms"} {
		_, _, err := runForecast(t, "query", "--approval-wait="+bad, "SELECT COUNT(*) FROM patients")
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "whole number of seconds") {
			t.Errorf("--approval-wait %s: %v, want a usage error", bad, err)
		}
	}
}
