//go:build !fedstat_testhooks

package daemon

import (
	"log/slog"
	"time"

	"github.com/fedstat/fedstat/coordinator"
)

// The fault-injection hooks exist only in a binary built with the
// fedstat_testhooks tag (testhooks.go); here they are none.

func testCoordinatorStep(*slog.Logger) func(coordinator.Step) { return nil }

func testNodeClock(*slog.Logger) func() time.Time { return nil }

func testGossipFast(*slog.Logger) bool { return false }

func testSeriesClock(*slog.Logger) func() time.Time { return nil }
