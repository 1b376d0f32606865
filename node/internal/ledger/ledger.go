// Package ledger is a node's privacy budget ledger: the authoritative record
// of how much privacy loss each analyst, and all analysts together, have
// spent on this node's data.
//
// # Accounting
//
// Budgets are in zero-concentrated differential privacy (zCDP): a query that
// costs rho is rho-zCDP, and zCDP composes additively, so the spend of a
// budget is the plain sum of the rho of the queries charged to it. A release
// that is rho-zCDP is (epsilon, delta)-DP for every delta in (0, 1) with
//
//	epsilon = rho + 2*sqrt(rho * ln(1/delta))
//
// (Bun and Steinke 2016, Proposition 1.3); Epsilon computes it for display.
// A Gaussian mechanism with L2 sensitivity Delta and standard deviation sigma
// is (Delta^2 / (2 sigma^2))-zCDP.
//
// Each query is charged against two budgets at once: the analyst's own
// (Limits.PerAnalystRho, or the analyst's entry in Limits.Analysts) and the
// node total (Limits.TotalRho). A charge succeeds only if both can cover it.
//
// # Exactly once
//
// Charge debits a query id at most once, ever: the debit and the answer the
// node computed for it are committed in one durable kv.Update, and the answer
// is handed back only after that commit. A re-delivered request with the same
// query id gets the stored answer byte for byte (never fresh noise) and costs
// nothing more. A crash before the commit leaves nothing debited and nothing
// released; a crash after it leaves the debit and the answer stored, and the
// next delivery replays that answer.
//
// Replace swaps the stored answer of a charged query id for another one the
// owner computes from it, debiting nothing: the owner must vouch that the new
// answer carries no information the old one did not (the node re-encrypts
// the same noisy share under a new key epoch, never a fresh draw).
//
// # Storage
//
// Everything lives in the node's kv.DB under the prefix "l/" (Prefix); other
// node state shares the DB under other prefixes. Keys:
//
//	l/seq          uint64 big-endian: number of charges so far
//	l/q/<queryID>  JSON entryRecord: seq, analyst, rho, time, answer size
//	l/r/<queryID>  the stored answer bytes
//	l/a/<analyst>  float64 bits, big-endian: the analyst's spend
//	l/t            float64 bits, big-endian: the node's total spend
//
// Limits are configuration, not stored: lowering a limit below what was
// already spent refuses every further charge against it.
//
// Stored answers are kept for good (a re-delivery may come at any time) and
// must fit in one kv transaction with the debit (a few MB; larger answers
// fail to commit and are not debited).
//
// # Never backwards
//
// Every debit commits with kv.UpdateWatermarked: a store that later comes
// back without a committed debit (Badger dropped a damaged tail of its
// write-ahead log) is refused at open (kv.ErrRolledBack) instead of
// handing out the lost budget again. Figures reads the spend (total, per
// analyst, number of charges) so that the owner can compare it with
// evidence kept outside the store (the node's audit log and its
// high-water mark file, see Hooks), and CarryForward raises it to such
// evidence after a restore. Losing the ledger is a privacy failure, not
// only an availability one: a ledger that restarts lower hands out the
// difference a second time.
package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
)

// Errors.
var (
	// ErrBudgetExhausted: the analyst's or the node's remaining budget cannot
	// cover the query. The error is a *ExhaustedError.
	ErrBudgetExhausted = errors.New("ledger: privacy budget exhausted")
	// ErrQueryIDReuse: the query id was charged before for a different
	// analyst or a different rho.
	ErrQueryIDReuse = errors.New("ledger: query id reused with different parameters")
	// ErrBadRho: rho is negative, NaN or infinite.
	ErrBadRho = errors.New("ledger: rho must be a finite number >= 0")
	// ErrBadQueryID: the query id or the analyst is empty.
	ErrBadQueryID = errors.New("ledger: query id and analyst must not be empty")
	// ErrCompute wraps the error of the compute function given to Charge.
	ErrCompute = errors.New("ledger: computing the answer failed")
	// ErrNotCharged: Replace of a query id that was never charged.
	ErrNotCharged = errors.New("ledger: query id not charged")
	// ErrCommittedNotConfirmed: the debit is committed and its answer
	// stored, but what must follow the commit failed (the store's
	// watermark file, Hooks.AfterDebit): the answer is not handed out; a
	// re-delivery of the query id replays it without a new debit.
	ErrCommittedNotConfirmed = errors.New("ledger: debit committed but not confirmed")
)

// Defaults of Limits.
const (
	// DefaultTotalRho is the node's total budget when Limits.TotalRho is 0.
	// rho = 4 is epsilon ~ 15.1 at delta = 1e-6 over the node's lifetime.
	DefaultTotalRho = 4.0
	// DefaultPerAnalystRho is each analyst's budget when
	// Limits.PerAnalystRho is 0. rho = 1 is epsilon ~ 8.4 at delta = 1e-6.
	DefaultPerAnalystRho = 1.0
	// DisplayDelta is the delta at which error messages show epsilon.
	DisplayDelta = 1e-6
)

// Prefix is the key prefix of everything the ledger stores.
const Prefix = "l/"

// Limits are the node's budgets, in rho (zCDP).
type Limits struct {
	// TotalRho is the node's total budget over all analysts. Defaults to
	// DefaultTotalRho when 0. math.Inf(1) means unlimited.
	TotalRho float64
	// PerAnalystRho is each analyst's budget unless Analysts overrides it.
	// Defaults to DefaultPerAnalystRho when 0. math.Inf(1) means unlimited.
	PerAnalystRho float64
	// Analysts overrides PerAnalystRho for the analysts it names. An
	// explicit 0 gives that analyst no budget at all. Defaults to none.
	Analysts map[string]float64
}

// Ledger is the budget ledger of one node. It is safe for concurrent use.
// Use one Ledger per kv.DB: the per-query-id serialisation that makes
// duplicate deliveries wait for the first one is in memory.
type Ledger struct {
	db     *kv.DB
	limits Limits
	hooks  Hooks

	mu       sync.Mutex
	inflight map[string]*qlock

	commitMu sync.Mutex // serialises the debit transactions
	now      func() time.Time
}

type qlock struct {
	ch   chan struct{} // holds one token: the lock
	refs int
}

// Hooks let the owner of a ledger keep evidence of its spend outside the
// ledger's keys. Both are optional.
type Hooks struct {
	// InDebit runs inside every debit's transaction, after the debit's own
	// writes: what it writes commits atomically with the debit (the node
	// stores its audit log's head there). It must not write under Prefix.
	// An error aborts the debit (nothing is committed).
	InDebit func(tx *kv.Txn) error
	// AfterDebit runs after every committed debit with the ledger's
	// figures after it, serialised with the other debits (so in commit
	// order, with figures that never decrease). If it fails, Charge
	// returns an error wrapping ErrCommittedNotConfirmed and the failure:
	// the debit stays committed, its answer is stored and replayed to a
	// re-delivery, but is not handed out by this call.
	AfterDebit func(Figures) error
}

// New returns the ledger stored in db with the given limits (zero fields take
// their defaults; negative or NaN limits count as 0, i.e. no budget).
func New(db *kv.DB, limits Limits) *Ledger { return NewWithHooks(db, limits, Hooks{}) }

// NewWithHooks is New with hooks run at every debit.
func NewWithHooks(db *kv.DB, limits Limits, hooks Hooks) *Ledger {
	if limits.TotalRho == 0 {
		limits.TotalRho = DefaultTotalRho
	}
	if limits.PerAnalystRho == 0 {
		limits.PerAnalystRho = DefaultPerAnalystRho
	}
	a := make(map[string]float64, len(limits.Analysts))
	for k, v := range limits.Analysts {
		a[k] = sanitizeLimit(v)
	}
	limits.Analysts = a
	limits.TotalRho = sanitizeLimit(limits.TotalRho)
	limits.PerAnalystRho = sanitizeLimit(limits.PerAnalystRho)
	return &Ledger{db: db, limits: limits, hooks: hooks, inflight: make(map[string]*qlock), now: time.Now}
}

func sanitizeLimit(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return v
}

// Epsilon converts rho-zCDP to the epsilon of (epsilon, delta)-DP:
// rho + 2*sqrt(rho*ln(1/delta)). delta must be in (0, 1); otherwise Epsilon
// returns +Inf.
func Epsilon(rho, delta float64) float64 {
	if !(delta > 0 && delta < 1) || rho < 0 {
		return math.Inf(1)
	}
	return rho + 2*math.Sqrt(rho*math.Log(1/delta))
}

// ExhaustedError is the error of a charge that a budget cannot cover. It
// wraps ErrBudgetExhausted. Its text is safe to show the analyst: it names the
// budget and the amounts, no data.
type ExhaustedError struct {
	// Budget is "analyst <name>" or "node total".
	Budget string
	// Limit, Spent and Requested are in rho.
	Limit, Spent, Requested float64
}

// Remaining returns the rho left in the budget (never negative).
func (e *ExhaustedError) Remaining() float64 { return math.Max(0, e.Limit-e.Spent) }

func (e *ExhaustedError) Error() string {
	rem := e.Remaining()
	return fmt.Sprintf("%v: %s has %.6g rho left (epsilon %.4g at delta %g) of %.6g, the query needs %.6g rho",
		ErrBudgetExhausted, e.Budget, rem, Epsilon(rem, DisplayDelta), DisplayDelta, e.Limit, e.Requested)
}

// Unwrap returns ErrBudgetExhausted.
func (e *ExhaustedError) Unwrap() error { return ErrBudgetExhausted }

// Entry is one charge, as Entries lists it.
type Entry struct {
	// Seq numbers the charges of this node from 1, in commit order.
	Seq        uint64    `json:"seq"`
	QueryID    string    `json:"query_id"`
	Analyst    string    `json:"analyst"`
	Rho        float64   `json:"rho"`
	Time       time.Time `json:"time"`
	AnswerSize int       `json:"answer_size"`
}

// entryRecord is the stored form of an Entry (under l/q/<queryID>).
type entryRecord struct {
	Seq        uint64  `json:"seq"`
	Analyst    string  `json:"analyst"`
	Rho        float64 `json:"rho"`
	TimeUnixNs int64   `json:"time_unix_ns"`
	AnswerSize int     `json:"answer_size"`
}

// tolerance absorbs float rounding so that, e.g., ten charges of 0.1 fit in
// a budget of 1.
const tolerance = 1e-9

func keyQuery(id string) []byte  { return []byte(Prefix + "q/" + id) }
func keyAnswer(id string) []byte { return []byte(Prefix + "r/" + id) }
func keyAnalyst(a string) []byte { return []byte(Prefix + "a/" + a) }
func keyTotal() []byte           { return []byte(Prefix + "t") }
func keySeq() []byte             { return []byte(Prefix + "seq") }
func encFloat(f float64) []byte  { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }
func encUint(u uint64) []byte    { return binary.BigEndian.AppendUint64(nil, u) }
func (l *Ledger) analystLimit(a string) float64 {
	if v, ok := l.limits.Analysts[a]; ok {
		return v
	}
	return l.limits.PerAnalystRho
}

func getFloat(tx *kv.Txn, key []byte) (float64, error) {
	v, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: read %s: %w", key, err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("ledger: corrupt value under %s", key)
	}
	return math.Float64frombits(binary.BigEndian.Uint64(v)), nil
}

func getUint(tx *kv.Txn, key []byte) (uint64, error) {
	v, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: read %s: %w", key, err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("ledger: corrupt value under %s", key)
	}
	return binary.BigEndian.Uint64(v), nil
}

// lookup returns the stored record and answer of queryID, or ok=false.
func lookup(tx *kv.Txn, queryID string) (rec entryRecord, answer []byte, ok bool, err error) {
	v, err := tx.Get(keyQuery(queryID))
	if errors.Is(err, kv.ErrNotFound) {
		return rec, nil, false, nil
	}
	if err != nil {
		return rec, nil, false, fmt.Errorf("ledger: read query %q: %w", queryID, err)
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, nil, false, fmt.Errorf("ledger: corrupt entry for query %q: %w", queryID, err)
	}
	answer, err = tx.Get(keyAnswer(queryID))
	if err != nil {
		return rec, nil, false, fmt.Errorf("ledger: read answer of query %q: %w", queryID, err)
	}
	return rec, answer, true, nil
}

// Answer returns the answer stored with the charge of queryID (ok false
// when there is no charge of it).
func (l *Ledger) Answer(queryID string) (answer []byte, ok bool, err error) {
	err = l.db.View(func(tx *kv.Txn) error {
		_, answer, ok, err = lookup(tx, queryID)
		return err
	})
	return answer, ok, err
}

// check returns the error of a charge of rho by analyst against the spends in
// tx, or nil if both budgets cover it.
func (l *Ledger) check(tx *kv.Txn, analyst string, rho float64) error {
	aSpent, err := getFloat(tx, keyAnalyst(analyst))
	if err != nil {
		return err
	}
	if lim := l.analystLimit(analyst); aSpent+rho > lim+tolerance {
		return &ExhaustedError{Budget: fmt.Sprintf("analyst %q", analyst), Limit: lim, Spent: aSpent, Requested: rho}
	}
	tSpent, err := getFloat(tx, keyTotal())
	if err != nil {
		return err
	}
	if lim := l.limits.TotalRho; tSpent+rho > lim+tolerance {
		return &ExhaustedError{Budget: "node total", Limit: lim, Spent: tSpent, Requested: rho}
	}
	return nil
}

func reuseErr(queryID string, rec entryRecord, analyst string, rho float64) error {
	if rec.Analyst == analyst && rec.Rho == rho {
		return nil
	}
	return fmt.Errorf("%w: query %q was charged to analyst %q for rho %g, now asked for analyst %q and rho %g",
		ErrQueryIDReuse, queryID, rec.Analyst, rec.Rho, analyst, rho)
}

// lock takes the in-memory lock of queryID, waiting for ctx.
func (l *Ledger) lock(ctx context.Context, queryID string) (unlock func(), err error) {
	l.mu.Lock()
	q := l.inflight[queryID]
	if q == nil {
		q = &qlock{ch: make(chan struct{}, 1)}
		l.inflight[queryID] = q
	}
	q.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		q.refs--
		if q.refs == 0 {
			delete(l.inflight, queryID)
		}
		l.mu.Unlock()
	}
	select {
	case q.ch <- struct{}{}:
		return func() { <-q.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// Charge debits rho from analyst's budget and from the node total for
// queryID, and returns the answer compute produced for it.
//
//   - If queryID was charged before (in this process or before a restart),
//     Charge returns the stored answer with replayed=true and does not call
//     compute. If the stored analyst or rho differ from the call's, it
//     returns an error wrapping ErrQueryIDReuse instead.
//   - Otherwise, if either budget cannot cover rho, it returns a
//     *ExhaustedError (wrapping ErrBudgetExhausted) before calling compute,
//     and debits nothing.
//   - Otherwise it calls compute once. If compute fails, nothing is debited
//     and the error wraps ErrCompute and compute's error. If it succeeds,
//     the debit and the answer are committed in one durable
//     kv.UpdateWatermarked, Hooks.AfterDebit runs, and only then is the
//     answer returned (replayed=false). The budgets are
//     checked again in that transaction; if a concurrent charge used them up
//     meanwhile, the answer is discarded (never released) and Charge returns
//     the *ExhaustedError.
//
// Concurrent calls with the same queryID are serialised: the first computes
// and commits, the others wait (or give up when ctx ends) and then replay the
// stored answer, so all of them get the same bytes and rho is debited once.
// If the first one fails, the next waiter tries afresh. compute runs without
// any ledger-wide lock held, so charges of different queries compute in
// parallel. ctx bounds the wait and is checked before compute; Charge does
// not cancel compute.
//
// The answer slice returned belongs to the caller.
func (l *Ledger) Charge(ctx context.Context, queryID, analyst string, rho float64, compute func() ([]byte, error)) (answer []byte, replayed bool, err error) {
	if queryID == "" || analyst == "" {
		return nil, false, ErrBadQueryID
	}
	if math.IsNaN(rho) || math.IsInf(rho, 0) || rho < 0 {
		return nil, false, fmt.Errorf("%w: got %g", ErrBadRho, rho)
	}
	unlock, err := l.lock(ctx, queryID)
	if err != nil {
		return nil, false, fmt.Errorf("ledger: waiting for query %q: %w", queryID, err)
	}
	defer unlock()

	// Replay, or refuse, before doing any work.
	var found bool
	err = l.db.View(func(tx *kv.Txn) error {
		rec, ans, ok, err := lookup(tx, queryID)
		if err != nil || !ok {
			return err
		}
		found, answer = true, ans
		if err := reuseErr(queryID, rec, analyst, rho); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if found {
		return answer, true, nil
	}
	if err := l.db.View(func(tx *kv.Txn) error { return l.check(tx, analyst, rho) }); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("ledger: query %q: %w", queryID, err)
	}

	ans, err := compute()
	if err != nil {
		return nil, false, fmt.Errorf("%w for query %q: %w", ErrCompute, queryID, err)
	}
	ans = bytes.Clone(ans)
	if ans == nil {
		ans = []byte{}
	}

	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	var stored []byte // set when another Ledger on the same DB won the race
	_, err = l.db.UpdateWatermarked(func(tx *kv.Txn) error {
		stored = nil
		rec, prev, ok, err := lookup(tx, queryID)
		if err != nil {
			return err
		}
		if ok {
			if err := reuseErr(queryID, rec, analyst, rho); err != nil {
				return err
			}
			stored = prev
			return nil
		}
		if err := l.check(tx, analyst, rho); err != nil {
			return err
		}
		aSpent, err := getFloat(tx, keyAnalyst(analyst))
		if err != nil {
			return err
		}
		tSpent, err := getFloat(tx, keyTotal())
		if err != nil {
			return err
		}
		seq, err := getUint(tx, keySeq())
		if err != nil {
			return err
		}
		seq++
		meta, err := json.Marshal(entryRecord{Seq: seq, Analyst: analyst, Rho: rho, TimeUnixNs: l.now().UnixNano(), AnswerSize: len(ans)})
		if err != nil {
			return err
		}
		for _, kvp := range [...]struct{ k, v []byte }{
			{keyQuery(queryID), meta},
			{keyAnswer(queryID), ans},
			{keyAnalyst(analyst), encFloat(aSpent + rho)},
			{keyTotal(), encFloat(tSpent + rho)},
			{keySeq(), encUint(seq)},
		} {
			if err := tx.Set(kvp.k, kvp.v); err != nil {
				return fmt.Errorf("ledger: write %s: %w", kvp.k, err)
			}
		}
		if l.hooks.InDebit != nil {
			return l.hooks.InDebit(tx)
		}
		return nil
	})
	if errors.Is(err, kv.ErrWatermark) {
		return nil, false, fmt.Errorf("%w: query %q: %w", ErrCommittedNotConfirmed, queryID, err)
	}
	if err != nil {
		var ee *ExhaustedError
		if errors.As(err, &ee) || errors.Is(err, ErrQueryIDReuse) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("ledger: commit debit of query %q: %w", queryID, err)
	}
	if stored != nil {
		return stored, true, nil
	}
	if l.hooks.AfterDebit != nil {
		f, err := ReadFigures(l.db)
		if err == nil {
			err = l.hooks.AfterDebit(f)
		}
		if err != nil {
			return nil, false, fmt.Errorf("%w: query %q: %w", ErrCommittedNotConfirmed, queryID, err)
		}
	}
	return ans, false, nil
}

// Replace lets compute swap the stored answer of queryID, charged to
// analyst for rho (ErrQueryIDReuse otherwise, ErrNotCharged when it was not
// charged), for another one, and debits nothing. compute gets the stored
// answer and returns the answer to store in its place, or nil to keep it.
// Replace returns the answer stored when it returns and whether compute's
// replaced it. It is serialised with Charge and other Replace calls of the
// same query id, and the swap commits durably (kv.UpdateWatermarked) before
// the new answer is returned. The new answer must carry no information the
// old one did not (see the package comment): the ledger cannot check that.
func (l *Ledger) Replace(ctx context.Context, queryID, analyst string, rho float64, compute func(stored []byte) ([]byte, error)) (answer []byte, replaced bool, err error) {
	if queryID == "" || analyst == "" {
		return nil, false, ErrBadQueryID
	}
	unlock, err := l.lock(ctx, queryID)
	if err != nil {
		return nil, false, fmt.Errorf("ledger: waiting for query %q: %w", queryID, err)
	}
	defer unlock()
	var stored []byte
	err = l.db.View(func(tx *kv.Txn) error {
		rec, ans, ok, err := lookup(tx, queryID)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %q", ErrNotCharged, queryID)
		}
		stored = ans
		return reuseErr(queryID, rec, analyst, rho)
	})
	if err != nil {
		return nil, false, err
	}
	next, err := compute(bytes.Clone(stored))
	if err != nil {
		return nil, false, fmt.Errorf("%w for query %q: %w", ErrCompute, queryID, err)
	}
	if next == nil {
		return stored, false, nil
	}
	next = bytes.Clone(next)
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	_, err = l.db.UpdateWatermarked(func(tx *kv.Txn) error {
		rec, ans, ok, err := lookup(tx, queryID)
		if err != nil {
			return err
		}
		if !ok || !bytes.Equal(ans, stored) {
			// Only another Ledger on the same DB could have changed it.
			return fmt.Errorf("ledger: the answer of query %q changed while it was replaced", queryID)
		}
		rec.AnswerSize = len(next)
		meta, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := tx.Set(keyQuery(queryID), meta); err != nil {
			return err
		}
		return tx.Set(keyAnswer(queryID), next)
	})
	if errors.Is(err, kv.ErrWatermark) {
		return nil, false, fmt.Errorf("%w: replaced answer of query %q: %w", ErrCommittedNotConfirmed, queryID, err)
	}
	if err != nil {
		return nil, false, fmt.Errorf("ledger: replace the answer of query %q: %w", queryID, err)
	}
	return next, true, nil
}

// Check reports whether a charge of rho by analyst would fit both budgets
// now, without debiting anything: nil, or a *ExhaustedError. It lets a node
// refuse early (before queueing a query for approval, say); Charge checks
// again and is the only authority.
func (l *Ledger) Check(analyst string, rho float64) error {
	if analyst == "" {
		return ErrBadQueryID
	}
	if math.IsNaN(rho) || math.IsInf(rho, 0) || rho < 0 {
		return fmt.Errorf("%w: got %g", ErrBadRho, rho)
	}
	return l.db.View(func(tx *kv.Txn) error { return l.check(tx, analyst, rho) })
}

// Remaining returns the largest rho that analyst can still be charged: the
// smaller of what is left of the analyst's budget and of the node total.
func (l *Ledger) Remaining(analyst string) (float64, error) {
	var aSpent, tSpent float64
	err := l.db.View(func(tx *kv.Txn) (err error) {
		if aSpent, err = getFloat(tx, keyAnalyst(analyst)); err != nil {
			return err
		}
		tSpent, err = getFloat(tx, keyTotal())
		return err
	})
	if err != nil {
		return 0, err
	}
	return math.Max(0, math.Min(l.analystLimit(analyst)-aSpent, l.limits.TotalRho-tSpent)), nil
}

// Spent returns what analyst has spent on this node and the analyst's limit,
// in rho.
func (l *Ledger) Spent(analyst string) (spent, limit float64, err error) {
	err = l.db.View(func(tx *kv.Txn) error {
		spent, err = getFloat(tx, keyAnalyst(analyst))
		return err
	})
	return spent, l.analystLimit(analyst), err
}

// Total returns what all analysts together have spent on this node and the
// node's total limit, in rho.
func (l *Ledger) Total() (spent, limit float64, err error) {
	err = l.db.View(func(tx *kv.Txn) error {
		spent, err = getFloat(tx, keyTotal())
		return err
	})
	return spent, l.limits.TotalRho, err
}

// Limits returns the limits in force, defaults applied. The Analysts map is a
// copy.
func (l *Ledger) Limits() Limits {
	out := l.limits
	out.Analysts = make(map[string]float64, len(l.limits.Analysts))
	for k, v := range l.limits.Analysts {
		out.Analysts[k] = v
	}
	return out
}

// Filter selects entries for Entries. Zero fields select everything.
type Filter struct {
	// Analyst keeps only this analyst's charges.
	Analyst string
	// QueryID keeps only this query's charge.
	QueryID string
	// Since keeps only charges committed at or after this time.
	Since time.Time
}

// Entries lists the charges that match f, in commit order (Seq), for
// `fedstat budget` and audits. It does not return the stored answers.
func (l *Ledger) Entries(f Filter) ([]Entry, error) {
	var out []Entry
	prefix := []byte(Prefix + "q/")
	err := l.db.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefix, func(key, value []byte) error {
			var rec entryRecord
			if err := json.Unmarshal(value, &rec); err != nil {
				return fmt.Errorf("ledger: corrupt entry under %s: %w", key, err)
			}
			e := Entry{
				Seq: rec.Seq, QueryID: string(key[len(prefix):]), Analyst: rec.Analyst, Rho: rec.Rho,
				Time: time.Unix(0, rec.TimeUnixNs).UTC(), AnswerSize: rec.AnswerSize,
			}
			if (f.Analyst != "" && e.Analyst != f.Analyst) || (f.QueryID != "" && e.QueryID != f.QueryID) ||
				(!f.Since.IsZero() && e.Time.Before(f.Since)) {
				return nil
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}
