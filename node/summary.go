package node

import (
	"maps"

	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// Summary returns the node's exact data summary (DataSource.Summary):
// patient and row counts per table. It is for the node's own admin and the
// network operator only; what leaves the node for anyone else is
// CoarseSummary.
func (n *Node) Summary() *typesv1.DataSummary { return n.cfg.Data.Summary() }

// CoarseSummary is the data summary a node gives the coordinator (and so
// analysts and the dashboard) and gossips to the pool: every count passed
// through CoarseCount. Only the node's own admin (`fedstat node status`)
// and a network operator calling the node's Info directly see exact counts.
func (n *Node) CoarseSummary() *typesv1.DataSummary {
	return coarseSummary(n.Summary())
}

func coarseSummary(s *typesv1.DataSummary) *typesv1.DataSummary {
	out := &typesv1.DataSummary{Patients: CoarseCount(s.GetPatients()), Rows: maps.Clone(s.GetRows())}
	if out.Rows == nil {
		out.Rows = map[string]int64{}
	}
	for k, v := range out.Rows {
		out.Rows[k] = CoarseCount(v)
	}
	return out
}

// CoarseCount is the one rounding of a record count that may leave a node
// for anyone but its own admin and the network operator:
//
//   - 0 stays 0 (an operator must see an empty node; an empty node holds no
//     patient to protect);
//   - 1 to 14 show as 10, so that a node with a handful of patients is
//     never shown as empty nor with its size;
//   - otherwise the count is rounded half up to two significant digits, but
//     never to a step finer than 10: 15-24 -> 20, 1,234 -> 1,200,
//     98,765 -> 99,000.
//
// The step is therefore at least 10 and at least 1% of the count, so adding
// or removing one patient (or a few records) changes what is shown only
// when the count crosses a rounding boundary, and the count is never shown
// exactly unless it is 0 or a multiple of the step. This is not differential
// privacy: the summary is for judging coverage and health, and anyone who
// watches it across many small imports can still learn when a boundary was
// crossed. Counts that matter for analysis come from queries, which are
// noised and charged to a budget.
func CoarseCount(v int64) int64 {
	switch {
	case v <= 0:
		return 0
	case v < 15:
		return 10
	}
	step := int64(10)
	for v/step >= 100 {
		step *= 10
	}
	return (v + step/2) / step * step
}
