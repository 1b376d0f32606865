package evidence

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

// Audit actions this package reads and writes.
const (
	// ActionDebited is the node's entry for each debit: details analyst
	// and rho.
	ActionDebited = "budget.debited"
	// ActionCarriedForward states the node's spend at that point (details
	// total_rho, charges, analysts, reason): written by a restore that
	// carried a higher spend into an older store, and as the first entry
	// of a log started anew after the old one was lost. Debits after it
	// add to it.
	ActionCarriedForward = "budget.carried_forward"
)

// ErrNoAudit: the audit log file does not exist.
var ErrNoAudit = errors.New("evidence: no audit log")

// Audit is what a node's audit log proves.
type Audit struct {
	// Path is the log's path.
	Path string
	// Entries is the number of entries; Seq and Head are the last one's
	// (0 and audit.ZeroHash for an empty log).
	Entries int
	Head    string
	// Spend is the larger, figure by figure, of the sum of all debits and
	// of the last carried-forward statement plus the debits after it.
	Spend ledger.Figures
	// Debits counts the budget.debited entries per query id.
	Debits map[string]int
	// Carried is the last budget.carried_forward statement, nil if none:
	// the ledger's first Carried.Charges charges are covered by it, with
	// or without their own debit entries.
	Carried *ledger.Figures
	// Found maps each hash asked for (ReadAudit's anchors) that is in the
	// chain to its entry's seq.
	Found map[string]uint64
}

// ReadAudit verifies the whole chain of the log at path and sums what it
// proves was spent. It returns ErrNoAudit when the file does not exist,
// and the audit package's error (ErrCorrupt, a *audit.VerifyError) when the
// chain does not verify. anchors are heads recorded elsewhere: Found says
// which of them the chain holds.
func ReadAudit(path string, anchors ...string) (*Audit, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoAudit, path)
	}
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	defer f.Close()
	a := &Audit{Path: path, Debits: map[string]int{}, Found: map[string]uint64{}}
	want := map[string]bool{}
	for _, h := range anchors {
		if h != "" {
			want[h] = true
		}
	}
	all := ledger.Figures{Analysts: map[string]float64{}}
	var since *ledger.Figures // the last carried-forward statement plus later debits
	// The first entry that verifies but does not read as evidence; the
	// rest of the chain is still verified (a broken chain is reported
	// first, as when the log was verified before it was read).
	var entryErr error
	n, head, err := audit.VerifyScan(f, func(line int, e audit.Entry) error {
		if entryErr != nil {
			return nil
		}
		if want[e.Hash] {
			a.Found[e.Hash] = e.Seq
		}
		switch e.Action {
		case ActionDebited:
			who, _ := e.Details["analyst"].(string)
			rho, err := number(e.Details["rho"])
			if err != nil || who == "" {
				entryErr = fmt.Errorf("evidence: %s: line %d (seq %d): a budget.debited entry without analyst and rho", path, line, e.Seq)
				return nil
			}
			a.Debits[e.QueryID]++
			add(&all, who, rho)
			if since != nil {
				add(since, who, rho)
			}
		case ActionCarriedForward:
			cf, err := carried(e.Details)
			if err != nil {
				entryErr = fmt.Errorf("evidence: %s: line %d (seq %d): %v", path, line, e.Seq, err)
				return nil
			}
			stated := cf.Clone()
			a.Carried = &stated
			since = &cf
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", audit.ErrCorrupt, path, err)
	case entryErr != nil:
		return nil, entryErr
	}
	a.Entries, a.Head = n, head
	a.Spend = all
	if since != nil {
		a.Spend = ledger.MaxFigures(all, *since)
	}
	return a, nil
}

func add(f *ledger.Figures, who string, rho float64) {
	f.TotalRho += rho
	f.Analysts[who] += rho
	f.Charges++
}

func number(v any) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return 0, fmt.Errorf("bad number %q", x)
		}
		return f, nil
	case float64:
		return x, nil
	}
	return 0, fmt.Errorf("not a number: %v", v)
}

// CarriedDetails are the details of a budget.carried_forward entry.
func CarriedDetails(f ledger.Figures, reason string, extra map[string]any) map[string]any {
	analysts := map[string]any{}
	for a, v := range f.Analysts {
		analysts[a] = v
	}
	d := map[string]any{"total_rho": f.TotalRho, "charges": f.Charges, "analysts": analysts, "reason": reason}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

func carried(d map[string]any) (ledger.Figures, error) {
	f := ledger.Figures{Analysts: map[string]float64{}}
	var err error
	if f.TotalRho, err = number(d["total_rho"]); err != nil {
		return f, fmt.Errorf("budget.carried_forward: total_rho: %v", err)
	}
	c, err := number(d["charges"])
	if err != nil || c != math.Trunc(c) {
		return f, fmt.Errorf("budget.carried_forward: charges: %v", d["charges"])
	}
	f.Charges = uint64(c)
	as, _ := d["analysts"].(map[string]any)
	for who, v := range as {
		if f.Analysts[who], err = number(v); err != nil {
			return f, fmt.Errorf("budget.carried_forward: analyst %q: %v", who, err)
		}
	}
	return f, nil
}
