//go:build fedstat_testhooks

package daemon

// Test-only fault injection, compiled only into a binary built with
// `-tags fedstat_testhooks` (the process fault tests in test/e2e build
// one). A release build has none of it (testhooks_off.go).
//
//	FEDSTAT_TEST_EXIT_AT=STEP         the coordinator exits (status 3, as
//	                                  after a crash: nothing is closed) at
//	                                  the named step (coordinator.Step)
//	FEDSTAT_TEST_CLOCK_OFFSET=DURATION the node's clock runs this far ahead
//	                                  (negative: behind)
//	FEDSTAT_TEST_GOSSIP_FAST=1        gossip uses loopback timings
//	                                  (membership.Config.Fast): a member
//	                                  declared dead is forgotten after 1s
//	FEDSTAT_TEST_SERIES_CLOCK=FILE     the coordinator's series clock (what
//	                                  decides that a period is due) is the
//	                                  RFC 3339 time in FILE, read at every
//	                                  look; the test advances it

import (
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/fedstat/fedstat/coordinator"
)

func testCoordinatorStep(log *slog.Logger) func(coordinator.Step) {
	at := os.Getenv("FEDSTAT_TEST_EXIT_AT")
	if at == "" {
		return nil
	}
	log.Warn("TEST BUILD: the coordinator exits at a ceremony step", "step", at)
	return func(s coordinator.Step) {
		if string(s) == at {
			log.Warn("TEST BUILD: exiting at ceremony step", "step", s)
			os.Exit(3)
		}
	}
}

func testNodeClock(log *slog.Logger) func() time.Time {
	v := os.Getenv("FEDSTAT_TEST_CLOCK_OFFSET")
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		log.Error("TEST BUILD: bad FEDSTAT_TEST_CLOCK_OFFSET; ignored", "value", v, "err", err)
		return nil
	}
	log.Warn("TEST BUILD: the node's clock is offset", "offset", d)
	return func() time.Time { return time.Now().Add(d) }
}

func testGossipFast(log *slog.Logger) bool {
	if os.Getenv("FEDSTAT_TEST_GOSSIP_FAST") == "" {
		return false
	}
	log.Warn("TEST BUILD: gossip uses loopback timings")
	return true
}

func testSeriesClock(log *slog.Logger) func() time.Time {
	path := os.Getenv("FEDSTAT_TEST_SERIES_CLOCK")
	if path == "" {
		return nil
	}
	log.Warn("TEST BUILD: the series clock is read from a file", "file", path)
	return func() time.Time {
		b, err := os.ReadFile(path)
		if err != nil {
			log.Error("TEST BUILD: series clock file", "err", err)
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
		if err != nil {
			log.Error("TEST BUILD: series clock file", "err", err)
			return time.Time{}
		}
		return t
	}
}
