package ledger

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
)

// Figures is what a ledger, or evidence of it, says was spent.
type Figures struct {
	// TotalRho is the node's total spend over all analysts.
	TotalRho float64 `json:"total_rho"`
	// Analysts is each analyst's spend; analysts who spent nothing may be
	// absent.
	Analysts map[string]float64 `json:"analysts"`
	// Charges is the number of debits (query ids charged).
	Charges uint64 `json:"charges"`
}

// Clone returns a copy that shares no map with f.
func (f Figures) Clone() Figures {
	f.Analysts = maps.Clone(f.Analysts)
	if f.Analysts == nil {
		f.Analysts = map[string]float64{}
	}
	return f
}

// Zero reports whether f records no spend at all.
func (f Figures) Zero() bool {
	if f.TotalRho != 0 || f.Charges != 0 {
		return false
	}
	for _, v := range f.Analysts {
		if v != 0 {
			return false
		}
	}
	return true
}

func (f Figures) String() string {
	s := fmt.Sprintf("%d charge(s), rho %.6g in total", f.Charges, f.TotalRho)
	for _, a := range slices.Sorted(maps.Keys(f.Analysts)) {
		s += fmt.Sprintf(", %s %.6g", a, f.Analysts[a])
	}
	return s
}

// Gap is one figure of a ledger that is below what some evidence shows.
type Gap struct {
	// What is "total rho", "charges" or "rho of analyst NAME".
	What string
	// Have is the ledger's figure, Want the evidence's.
	Have, Want float64
}

func (g Gap) String() string {
	if g.What == "charges" {
		return fmt.Sprintf("%s %d < %d", g.What, int64(g.Have), int64(g.Want))
	}
	return fmt.Sprintf("%s %.6g < %.6g", g.What, g.Have, g.Want)
}

// Slack is how far a spend may fall below evidence of it and still count as
// equal: sums of the same debits in another order differ in the last bits.
const Slack = 1e-9

func below(have, want float64) bool { return have < want-Slack*math.Max(1, math.Abs(want)) }

// Below returns every figure of f that is below the same figure of
// evidence (total, charges, and each analyst evidence names), or nil when
// f covers evidence. A ledger may be ahead of its evidence (a crash between
// a debit and the record of it elsewhere); it must never be behind.
func (f Figures) Below(evidence Figures) []Gap {
	var gaps []Gap
	if below(f.TotalRho, evidence.TotalRho) {
		gaps = append(gaps, Gap{"total rho", f.TotalRho, evidence.TotalRho})
	}
	if f.Charges < evidence.Charges {
		gaps = append(gaps, Gap{"charges", float64(f.Charges), float64(evidence.Charges)})
	}
	for _, a := range slices.Sorted(maps.Keys(evidence.Analysts)) {
		if below(f.Analysts[a], evidence.Analysts[a]) {
			gaps = append(gaps, Gap{"rho of analyst " + strconv.Quote(a), f.Analysts[a], evidence.Analysts[a]})
		}
	}
	return gaps
}

// MaxFigures returns, figure by figure, the largest of fs.
func MaxFigures(fs ...Figures) Figures {
	out := Figures{Analysts: map[string]float64{}}
	for _, f := range fs {
		out.TotalRho = math.Max(out.TotalRho, f.TotalRho)
		out.Charges = max(out.Charges, f.Charges)
		for a, v := range f.Analysts {
			out.Analysts[a] = math.Max(out.Analysts[a], v)
		}
	}
	return out
}

// ReadFigures returns the spend recorded in the ledger stored in db.
func ReadFigures(db *kv.DB) (Figures, error) {
	f := Figures{Analysts: map[string]float64{}}
	err := db.View(func(tx *kv.Txn) error { return readFigures(tx, &f) })
	return f, err
}

func readFigures(tx *kv.Txn, f *Figures) error {
	var err error
	if f.TotalRho, err = getFloat(tx, keyTotal()); err != nil {
		return err
	}
	if f.Charges, err = getUint(tx, keySeq()); err != nil {
		return err
	}
	prefix := []byte(Prefix + "a/")
	return tx.Iterate(prefix, func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("ledger: corrupt value under %s", k)
		}
		f.Analysts[string(k[len(prefix):])] = math.Float64frombits(binary.BigEndian.Uint64(v))
		return nil
	})
}

// Figures returns what this ledger records as spent.
func (l *Ledger) Figures() (Figures, error) { return ReadFigures(l.db) }

// keyCarried records a carry-forward (CarryForward) under its time.
func keyCarried(t time.Time) []byte {
	return []byte(Prefix + "carried/" + fmt.Sprintf("%020d", t.UnixNano()))
}

// Carried is the stored record of a CarryForward.
type Carried struct {
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	Before Figures   `json:"before"`
	After  Figures   `json:"after"`
}

// CarryForward raises the spend recorded in db, figure by figure, to at
// least floor (the total, each analyst's spend and the number of charges;
// nothing is lowered), in one watermarked update that also records what
// was done and why under l/carried/. It returns the figures after. A
// restore uses it to carry the spend proved by the audit log and the
// high-water mark into an older copy of the store: the per-query records
// of the debits in between are not recreated (a re-delivery of such a
// query id is charged again, which overstates the spend and never
// understates it).
func CarryForward(db *kv.DB, floor Figures, reason string, now time.Time) (Figures, error) {
	var after Figures
	_, err := db.UpdateWatermarked(func(tx *kv.Txn) error {
		before := Figures{Analysts: map[string]float64{}}
		if err := readFigures(tx, &before); err != nil {
			return err
		}
		after = MaxFigures(before, floor)
		if err := tx.Set(keyTotal(), encFloat(after.TotalRho)); err != nil {
			return err
		}
		if err := tx.Set(keySeq(), encUint(after.Charges)); err != nil {
			return err
		}
		for a, v := range after.Analysts {
			if err := tx.Set(keyAnalyst(a), encFloat(v)); err != nil {
				return err
			}
		}
		rec, err := json.Marshal(Carried{Time: now.UTC(), Reason: reason, Before: before, After: after})
		if err != nil {
			return err
		}
		return tx.Set(keyCarried(now), rec)
	})
	return after, err
}

// CarriedForward lists the carry-forwards recorded in db, oldest first.
func CarriedForward(db *kv.DB) ([]Carried, error) {
	var out []Carried
	err := db.View(func(tx *kv.Txn) error {
		return tx.Iterate([]byte(Prefix+"carried/"), func(k, v []byte) error {
			var c Carried
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("ledger: corrupt record under %s: %w", k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}
