package coordinator

import (
	"log/slog"
	"time"

	"github.com/fedstat/fedstat/queries/plan"
)

// NewOffline returns a coordinator with the catalogue cat and nothing else:
// no nodes, no key epoch (every query it is asked to submit fails with
// ErrNoEpoch). The external tests use it for what is decided before any
// query runs.
func NewOffline(cat *plan.Catalogue) *Coordinator {
	return &Coordinator{cfg: Config{Catalogue: cat, Now: time.Now}, log: slog.New(slog.DiscardHandler)}
}
