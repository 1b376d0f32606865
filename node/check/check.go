// Package check is the start-up check of a node's data directory, run by
// the node daemon before it serves and by `fedstat node check`: one
// function, Run, for both.
//
// It looks at everything that proves what the node has done and must
// agree before the node may answer a query again:
//
//   - store: the kv store's files (kv.Check: MANIFEST, tables, watermark)
//     and its open (a write-ahead log that lost committed debits is
//     kv.ErrRolledBack);
//   - space: the free space the store needs (kv.ErrNoSpace);
//   - ledger: the budget ledger against the audit log's debits and against
//     the high-water mark file, per analyst and in total, and the number of
//     charges: a ledger below either is refused, naming both figures. A
//     ledger lost with its store is "below" too: the node never starts
//     with less spent than it had;
//   - audit: the log's chain, and the heads recorded in the store and in
//     the mark, which it must still hold (a log cut at an entry boundary,
//     deleted, or replaced by an older copy);
//   - mark: the high-water mark file itself (missing or damaged alone: it
//     is re-created from the ledger at start, with a warning);
//   - keys: key files of an epoch the store has no record of (the store
//     was lost or is older than the keys: refused, naming the files), and
//     the current epoch's share (keystore.CheckEpoch, with the threshold
//     share when T < N: missing or damaged, the node starts but cannot
//     decrypt in that epoch);
//   - certificate: the node's certificate and the network CA at this
//     machine's clock (pki).
//
// Results are FAIL and fatal (the daemon refuses to start), FAIL and not
// fatal (the daemon starts but is not ready for an epoch), warn, or ok.
package check

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/internal/evidence"
	"github.com/fedstat/fedstat/node/internal/keystore"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

// ErrRefused: a fatal check failed; the node must not start. It comes as
// a *RefusedError listing the failures.
var ErrRefused = errors.New("check: the node must not start on this data directory")

// MarkFile is the high-water mark file's name in a data directory.
const MarkFile = evidence.MarkFile

// Options say what to check.
type Options struct {
	// DataDir is the node's data directory. Required.
	DataDir string
	// AuditLog is the node's audit log. Defaults to DataDir/audit.log.
	AuditLog string
	// KeyFile is the operator key file, when the store and the shares are
	// encrypted at rest. Defaults to none.
	KeyFile string
	// Identity is the node's certificate and key, loaded (the daemon).
	// Otherwise PKIDir and Name, when set, are loaded here, and a failure
	// to load them is a failed check. Without either the certificate is
	// not checked and the mark's signer is checked by name only.
	Identity     *pki.Identity
	PKIDir, Name string
	// Keep leaves the store open in Report.DB for the caller (the daemon
	// serves from it), creating it when the directory is new. Otherwise
	// Run looks at the store with kv.Check first, opens it only to read
	// it, and closes it. Defaults to false.
	Keep bool
	// Logger receives kv's and Badger's messages. Defaults to discarding.
	Logger *slog.Logger
	// Now is the clock for the certificate check. Defaults to time.Now.
	Now func() time.Time
}

// Status is a check's outcome.
type Status string

// Statuses.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "FAIL"
)

// Result is one check.
type Result struct {
	// Check names what was checked: store, space, ledger, audit, mark,
	// keys, certificate, daemon.
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Fatal: the daemon refuses to start. A FAIL that is not fatal leaves
	// the node running but not ready (for Epoch).
	Fatal bool   `json:"fatal,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
	// File is the file or directory concerned.
	File string `json:"file,omitempty"`
	// Problem says what was found (what is fine, for ok).
	Problem string `json:"problem"`
	// Fix says what to do.
	Fix string `json:"fix,omitempty"`
}

// Report is the outcome of Run.
type Report struct {
	DataDir string   `json:"data_dir"`
	Results []Result `json:"results"`
	// The figures each source gives, when it could be read.
	Ledger *ledger.Figures `json:"ledger,omitempty"`
	Audit  *ledger.Figures `json:"audit,omitempty"`
	Mark   *ledger.Figures `json:"mark,omitempty"`
	// Epoch is the store's key epoch (0: none).
	Epoch uint64 `json:"epoch,omitempty"`
	// Unaudited lists charges in the ledger that the audit log has no
	// debit for and no carried-forward statement covers (a crash between
	// a debit and its audit entry); AuditOnly
	// debits in the audit log the ledger has no record of (records not
	// carried forward by a restore).
	Unaudited []string `json:"unaudited,omitempty"`
	AuditOnly []string `json:"audit_only,omitempty"`
	// InUse: a running daemon has the store open; nothing else was checked.
	InUse bool `json:"in_use,omitempty"`

	// For the daemon (Options.Keep): the open store, the head the audit
	// log must hold (audit.Options.ExpectHead), and whether the mark file
	// is missing or invalid (moved aside and re-created at start).
	DB         *kv.DB `json:"-"`
	ExpectHead string `json:"-"`
	BadMark    bool   `json:"-"`
}

// OK reports whether no check failed.
func (r *Report) OK() bool {
	for _, c := range r.Results {
		if c.Status == Fail {
			return false
		}
	}
	return true
}

// Fatal returns a *RefusedError with the fatal failures, or nil.
func (r *Report) Fatal() error {
	var fs []Result
	for _, c := range r.Results {
		if c.Status == Fail && c.Fatal {
			fs = append(fs, c)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	return &RefusedError{DataDir: r.DataDir, Failures: fs}
}

// Close closes the store left open by Options.Keep.
func (r *Report) Close() error {
	if r.DB == nil {
		return nil
	}
	err := r.DB.Close()
	r.DB = nil
	return err
}

// RefusedError lists the fatal failures of a check.
type RefusedError struct {
	DataDir  string
	Failures []Result
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node data directory %s: refusing to start:", e.DataDir)
	for _, f := range e.Failures {
		b.WriteString("\n  ")
		b.WriteString(f.Line())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Line is the result as one line of text.
func (c Result) Line() string {
	s := fmt.Sprintf("%-4s %-11s", c.Status, c.Check)
	if c.File != "" {
		s += " " + c.File + ":"
	}
	s += " " + c.Problem
	if c.Fix != "" {
		s += " -- fix: " + c.Fix
	}
	return s
}

func (r *Report) add(c Result) { r.Results = append(r.Results, c) }

// Run checks the data directory described by o. The error is for a
// directory that cannot be looked at at all; every finding is in the
// report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.DataDir == "" {
		return nil, admin.ErrNoDataDir
	}
	if o.AuditLog == "" {
		o.AuditLog = filepath.Join(o.DataDir, "audit.log")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Report{DataDir: o.DataDir}
	if st, err := os.Stat(o.DataDir); err != nil || !st.IsDir() {
		if !o.Keep {
			return nil, fmt.Errorf("check: data directory %s: %w", o.DataDir, errOr(err, "not a directory"))
		}
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
	}
	c := &checker{o: o, r: r}
	c.certificate()
	c.readMark()
	c.listKeys()
	if !c.store() {
		return r, nil // in use
	}
	c.readAudit()
	c.compare()
	c.keys()
	if !o.Keep {
		r.Close()
	}
	return r, nil
}

func errOr(err error, s string) error {
	if err != nil {
		return err
	}
	return errors.New(s)
}

type checker struct {
	o  Options
	r  *Report
	id *pki.Identity

	mark    *evidence.Mark
	markErr error

	keyEpochs map[uint64][]string // key files by epoch
	keysErr   error

	storeMissing bool
	storeBad     bool // damaged, rolled back, unreadable: no ledger
	epoch        evidence.Epoch
	pending      uint64 // the pending epoch's number, when havePending
	havePending  bool
	haveEpoch    bool
	anchor       evidence.Anchor
	haveAnchor   bool
	entries      []ledger.Entry

	audit    *evidence.Audit
	auditErr error
}

func (c *checker) restoreFix() string {
	return fmt.Sprintf("`fedstat node restore --data-dir %s BACKUP` (it keeps the higher of the backup's spend and this one's); never start the node on this store", c.o.DataDir)
}

// certificate checks the node's certificate and the network CA at this
// machine's clock.
func (c *checker) certificate() {
	id := c.o.Identity
	if id == nil && c.o.PKIDir != "" && c.o.Name != "" {
		var err error
		id, err = pki.LoadIdentityDir(c.o.PKIDir, c.o.Name)
		if err != nil {
			fix := "issue the node a certificate of the network CA (`fedstat ca issue --role node`) and keep its key mode 0600"
			if errors.Is(err, pki.ErrClock) {
				fix = "check this machine's clock (NTP); if it is right, issue a new certificate"
			}
			c.r.add(Result{Check: "certificate", Status: Fail, Fatal: true, File: filepath.Join(c.o.PKIDir, pki.CertFile(c.o.Name)), Problem: err.Error(), Fix: fix})
			return
		}
	}
	if id == nil {
		c.r.add(Result{Check: "certificate", Status: Warn, Problem: "not checked (give --config, or --pki-dir and --name); the mark's signer is checked by name only"})
		return
	}
	c.id = id
	now := c.o.Now()
	file := filepath.Join(c.o.PKIDir, pki.CertFile(id.Name()))
	if c.o.PKIDir == "" {
		file = ""
	}
	if err := pki.VerifyAt(id.CA, id.Cert, now); err != nil {
		c.r.add(Result{Check: "certificate", Status: Fail, Fatal: true, File: file, Problem: err.Error(),
			Fix: "check this machine's clock (NTP); if it is right, issue a new certificate (`fedstat ca issue`)"})
		return
	}
	if r, _ := pki.RoleOf(id.Cert); r != pki.RoleNode {
		c.r.add(Result{Check: "certificate", Status: Fail, Fatal: true, File: file, Problem: fmt.Sprintf("certificate of %s has role %s, want node", id.Name(), r),
			Fix: "issue a node certificate (`fedstat ca issue --role node`)"})
		return
	}
	until := id.Cert.NotAfter
	if id.CA.NotAfter.Before(until) {
		until = id.CA.NotAfter
	}
	if left := until.Sub(now); left < 7*24*time.Hour {
		c.r.add(Result{Check: "certificate", Status: Warn, File: file, Problem: fmt.Sprintf("%s's certificate or the network CA expires at %s (in %s)", id.Name(), until.UTC().Format(time.RFC3339), left.Round(time.Hour)),
			Fix: "issue a new certificate before then"})
		return
	}
	c.r.add(Result{Check: "certificate", Status: OK, File: file, Problem: fmt.Sprintf("%s, role node, valid until %s by this machine's clock", id.Name(), until.UTC().Format(time.RFC3339))})
}

func (c *checker) markPath() string { return filepath.Join(c.o.DataDir, MarkFile) }

func (c *checker) readMark() {
	m, err := evidence.ReadMark(c.markPath())
	if err == nil {
		var ca *x509.Certificate
		name := c.o.Name
		if c.id != nil {
			ca, name = c.id.CA, c.id.Name()
		}
		if name == "" {
			name = m.Node
		}
		err = m.Verify(c.markPath(), ca, name)
	}
	if err != nil {
		c.markErr = err
		return
	}
	c.mark = m
	f := m.Spend.Clone()
	c.r.Mark = &f
}

var keyFileRE = regexp.MustCompile(`^epoch-([0-9]+)(-.*)?\.secret$`)

func (c *checker) keysDir() string { return filepath.Join(c.o.DataDir, "keys") }

func (c *checker) listKeys() {
	c.keyEpochs = map[uint64][]string{}
	ents, err := os.ReadDir(c.keysDir())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		c.keysErr = err
		return
	}
	for _, e := range ents {
		m := keyFileRE.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			continue
		}
		c.keyEpochs[n] = append(c.keyEpochs[n], filepath.Join(c.keysDir(), e.Name()))
	}
}

// evidenceOfLife says what shows that this node existed before, when its
// store is missing: "" when nothing does.
func (c *checker) evidenceOfLife() string {
	var what []string
	if c.mark != nil && !c.mark.Spend.Zero() {
		what = append(what, fmt.Sprintf("%s records %v", MarkFile, c.mark.Spend))
	}
	if a, err := evidence.ReadAudit(c.o.AuditLog); err == nil && a.Entries > 0 {
		what = append(what, fmt.Sprintf("the audit log has %d entries (%v)", a.Entries, a.Spend))
	}
	if len(c.keyEpochs) > 0 {
		what = append(what, fmt.Sprintf("keys/ holds key files of %d epoch(s)", len(c.keyEpochs)))
	}
	return strings.Join(what, "; ")
}

// store looks at and opens the store. It returns false when a running
// daemon has it open.
func (c *checker) store() bool {
	dir := admin.KVDir(c.o.DataDir)
	storeKey, _, err := admin.Keys(c.o.KeyFile)
	if err != nil {
		c.r.add(Result{Check: "store", Status: Fail, Fatal: true, File: c.o.KeyFile, Problem: err.Error(), Fix: "give the operator key file the store was made with (mode 0600)"})
		c.storeBad = true
		return true
	}
	kvo := kv.Options{Dir: dir, EncryptionKey: storeKey, Logger: c.o.Logger}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		c.storeMissing = true
		if life := c.evidenceOfLife(); life != "" {
			c.r.add(Result{Check: "store", Status: Fail, Fatal: true, File: dir, Problem: "the store is missing, but this node has a past: " + life,
				Fix: c.restoreFix()})
			c.storeBad = true
			return true
		}
		if !c.o.Keep {
			c.r.add(Result{Check: "store", Status: OK, File: dir, Problem: "no store yet (a new node: it is created at start or by `fedstat node import`)"})
			c.r.Ledger = &ledger.Figures{Analysts: map[string]float64{}}
			return true
		}
	}
	if !c.o.Keep {
		if err := kv.Check(kvo); err != nil {
			if errors.Is(err, kv.ErrInUse) {
				c.r.InUse = true
				c.r.add(Result{Check: "store", Status: OK, File: dir, Problem: "in use by the running daemon; only the daemon's readiness can be checked"})
				return false
			}
			c.storeFailure(dir, err)
			return true
		}
	}
	db, err := kv.Open(kvo)
	if err != nil {
		if errors.Is(err, kv.ErrInUse) && !c.o.Keep {
			c.r.InUse = true
			c.r.add(Result{Check: "store", Status: OK, File: dir, Problem: "in use by the running daemon; only the daemon's readiness can be checked"})
			return false
		}
		c.storeFailure(dir, err)
		return true
	}
	c.r.DB = db
	if err := c.readStore(db); err != nil {
		c.storeFailure(dir, err)
		return true
	}
	w, _ := db.Watermark()
	if c.storeMissing {
		c.r.add(Result{Check: "store", Status: OK, File: dir, Problem: "new store created"})
	} else {
		c.r.add(Result{Check: "store", Status: OK, File: dir, Problem: fmt.Sprintf("files intact, %d watermarked update(s), nothing lost", w)})
	}
	if err := db.Health(); err != nil {
		c.r.add(Result{Check: "space", Status: Fail, Fatal: true, File: dir, Problem: err.Error(), Fix: "free space on that file system"})
	} else {
		c.r.add(Result{Check: "space", Status: OK, File: dir, Problem: "enough free space for the store's writes and Badger's flushes"})
	}
	return true
}

func (c *checker) storeFailure(dir string, err error) {
	c.storeBad = true
	res := Result{Check: "store", Status: Fail, Fatal: true, File: dir, Problem: err.Error(), Fix: c.restoreFix()}
	var de *kv.DamageError
	var ne *kv.NoSpaceError
	switch {
	case errors.As(err, &de):
		if de.File != "" {
			res.File = filepath.Join(de.Dir, de.File)
		}
		res.Problem = strings.TrimSuffix(strings.TrimPrefix(err.Error(), "kv: "), "; "+kv.RestoreAdvice)
	case errors.As(err, &ne):
		res.Check = "space"
		res.Fix = "free space on that file system; everything acknowledged before is intact"
	case errors.Is(err, kv.ErrInUse):
		res.Fix = "another process has this data directory open (a node daemon, `fedstat node import`): stop it first"
	}
	c.r.add(res)
}

func (c *checker) readStore(db *kv.DB) error {
	f, err := ledger.ReadFigures(db)
	if err != nil {
		return err
	}
	c.r.Ledger = &f
	if c.pending, c.havePending, err = evidence.PendingEpoch(db); err != nil {
		return err
	}
	if c.epoch, c.haveEpoch, err = evidence.StoredEpoch(db); err != nil {
		return err
	}
	if c.haveEpoch {
		c.r.Epoch = c.epoch.Epoch
	}
	if c.anchor, c.haveAnchor, err = evidence.ReadAnchor(db); err != nil {
		return err
	}
	c.entries, err = ledger.New(db, ledger.Limits{}).Entries(ledger.Filter{})
	return err
}

func (c *checker) readAudit() {
	var anchors []string
	if c.haveAnchor {
		anchors = append(anchors, c.anchor.Hash)
	}
	if c.mark != nil && c.mark.AuditSeq > 0 {
		anchors = append(anchors, c.mark.AuditHead)
	}
	c.audit, c.auditErr = evidence.ReadAudit(c.o.AuditLog, anchors...)
	if c.audit != nil {
		f := c.audit.Spend.Clone()
		c.r.Audit = &f
	}
}

// compare compares the ledger with the audit log and the mark, and checks
// that the audit log still holds the heads recorded elsewhere.
func (c *checker) compare() {
	path := c.o.AuditLog
	lostFix := fmt.Sprintf("restore the audit log from a backup (`fedstat node restore --data-dir %s BACKUP` puts the backup's log back and keeps the higher spend); if it is lost for good, `fedstat node reset-audit --data-dir %s` starts a new log that records the loss",
		c.o.DataDir, c.o.DataDir)
	type head struct {
		where string
		seq   uint64
		hash  string
	}
	var heads []head
	if c.haveAnchor {
		heads = append(heads, head{"the store", c.anchor.Seq, c.anchor.Hash})
	}
	if c.mark != nil && c.mark.AuditSeq > 0 {
		heads = append(heads, head{MarkFile, c.mark.AuditSeq, c.mark.AuditHead})
	}
	auditOK := false
	switch {
	case errors.Is(c.auditErr, evidence.ErrNoAudit):
		var why []string
		for _, h := range heads {
			why = append(why, fmt.Sprintf("%s recorded its head at entry %d", h.where, h.seq))
		}
		if c.r.Ledger != nil && c.r.Ledger.Charges > 0 {
			why = append(why, fmt.Sprintf("the ledger records %d debit(s), each audited", c.r.Ledger.Charges))
		}
		if len(why) > 0 {
			c.r.add(Result{Check: "audit", Status: Fail, Fatal: true, File: path, Problem: "the audit log is missing, but " + strings.Join(why, "; "), Fix: lostFix})
		} else {
			c.r.add(Result{Check: "audit", Status: OK, File: path, Problem: "no audit log yet (a new node)"})
			auditOK = true
		}
	case c.auditErr != nil:
		c.r.add(Result{Check: "audit", Status: Fail, Fatal: true, File: path, Problem: c.auditErr.Error(),
			Fix: fmt.Sprintf("run `fedstat audit verify %s` to see the first bad entry; then %s", path, lostFix)})
	default:
		var missing []string
		best := head{}
		for _, h := range heads {
			if _, ok := c.audit.Found[h.hash]; !ok {
				missing = append(missing, fmt.Sprintf("the entry %d (%s…) whose hash %s recorded", h.seq, short(h.hash), h.where))
			} else if h.seq > best.seq {
				best = h
			}
		}
		if len(missing) > 0 {
			c.r.add(Result{Check: "audit", Status: Fail, Fatal: true, File: path,
				Problem: fmt.Sprintf("the chain verifies (%d entries) but lacks %s: the log was cut short at an entry boundary, replaced by an older copy, or rewritten", c.audit.Entries, strings.Join(missing, " and ")),
				Fix:     lostFix})
		} else {
			c.r.ExpectHead = best.hash
			c.r.add(Result{Check: "audit", Status: OK, File: path, Problem: fmt.Sprintf("chain of %d entries verifies, holds the heads recorded in the store and the mark; its debits: %v", c.audit.Entries, c.audit.Spend)})
			auditOK = true
		}
	}

	if c.storeBad || c.r.Ledger == nil {
		c.markResult(false)
		return
	}
	lf := *c.r.Ledger
	behind := false
	if auditOK && c.audit != nil {
		if gaps := lf.Below(c.audit.Spend); gaps != nil {
			behind = true
			c.r.add(Result{Check: "ledger", Status: Fail, Fatal: true, File: admin.KVDir(c.o.DataDir),
				Problem: fmt.Sprintf("the budget ledger (%v) is below what the audit log %s proves was spent (%v): %s; the store lost debits (wiped, replaced, restored from an older copy, or rolled back) and would hand that budget out again",
					lf, path, c.audit.Spend, gapText(gaps)),
				Fix: c.restoreFix()})
		}
	}
	if c.mark != nil {
		if gaps := lf.Below(c.mark.Spend); gaps != nil {
			behind = true
			c.r.add(Result{Check: "ledger", Status: Fail, Fatal: true, File: c.markPath(),
				Problem: fmt.Sprintf("the budget ledger (%v) is below the high-water mark written at %s (%v): %s; the store lost debits (wiped, replaced, restored from an older copy, or rolled back) and would hand that budget out again",
					lf, c.mark.Time.UTC().Format(time.RFC3339), c.mark.Spend, gapText(gaps)),
				Fix: c.restoreFix()})
		}
	}
	if !behind {
		var notes []string
		if c.audit != nil {
			inLedger := map[string]bool{}
			var covered uint64 // charges a carried-forward statement covers
			if c.audit.Carried != nil {
				covered = c.audit.Carried.Charges
			}
			for _, e := range c.entries {
				inLedger[e.QueryID] = true
				if c.audit.Debits[e.QueryID] == 0 && e.Seq > covered {
					c.r.Unaudited = append(c.r.Unaudited, e.QueryID)
				}
			}
			for q := range c.audit.Debits {
				if !inLedger[q] {
					c.r.AuditOnly = append(c.r.AuditOnly, q)
				}
			}
			sort.Strings(c.r.AuditOnly)
			if n := len(c.r.Unaudited); n > 0 {
				notes = append(notes, fmt.Sprintf("%d charge(s) have no audit entry (a stop between a debit and its entry): %s", n, strings.Join(firstN(c.r.Unaudited, 5), ", ")))
			}
		}
		what := fmt.Sprintf("%v; not below the audit log", lf)
		if c.mark != nil {
			what += " nor the high-water mark"
		}
		if len(notes) > 0 {
			what += "; " + strings.Join(notes, "; ")
		}
		c.r.add(Result{Check: "ledger", Status: OK, File: admin.KVDir(c.o.DataDir), Problem: what})
	}
	c.markResult(!behind && auditOK)
}

// markResult reports on the mark file itself. healthy: the ledger covers
// every evidence there is, so a missing or invalid mark is re-created.
func (c *checker) markResult(healthy bool) {
	path := c.markPath()
	switch {
	case c.mark != nil:
		c.r.add(Result{Check: "mark", Status: OK, File: path, Problem: fmt.Sprintf("signed by %s at %s: %v", c.mark.Node, c.mark.Time.UTC().Format(time.RFC3339), c.mark.Spend)})
	case errors.Is(c.markErr, evidence.ErrNoMark) && healthy:
		c.r.BadMark = true
		c.r.add(Result{Check: "mark", Status: Warn, File: path, Problem: "missing (a new node, a fresh volume, or deleted); the ledger covers the audit log",
			Fix: "none: the node re-creates it from the ledger at start"})
	case healthy:
		c.r.BadMark = true
		c.r.add(Result{Check: "mark", Status: Warn, File: path, Problem: c.markErr.Error() + "; the ledger covers the audit log",
			Fix: "none: at start the node moves it aside (" + MarkFile + ".invalid-TIME) and re-creates it from the ledger"})
	case errors.Is(c.markErr, evidence.ErrNoMark):
		c.r.add(Result{Check: "mark", Status: Warn, File: path, Problem: "missing; it is re-created once the failures above are fixed"})
	default:
		c.r.add(Result{Check: "mark", Status: Warn, File: path, Problem: c.markErr.Error()})
	}
}

func gapText(gaps []ledger.Gap) string {
	s := make([]string, len(gaps))
	for i, g := range gaps {
		s[i] = g.String()
	}
	return strings.Join(s, ", ")
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), "…")
	}
	return s
}

// keys checks the key files against the store's epoch record.
func (c *checker) keys() {
	dir := c.keysDir()
	if c.keysErr != nil {
		c.r.add(Result{Check: "keys", Status: Fail, Fatal: true, File: dir, Problem: c.keysErr.Error(), Fix: "make the directory readable by the node's user (mode 0700)"})
		return
	}
	if c.storeBad {
		return
	}
	var stray []string
	var strayEpochs []uint64
	// A key file is accounted for up to the newest epoch the store knows,
	// active or pending (a ceremony in progress or failed: the node keeps
	// serving the active epoch meanwhile).
	known, haveKnown := c.epoch.Epoch, c.haveEpoch
	if c.pending > known || (c.havePending && !haveKnown) {
		known, haveKnown = max(known, c.pending), true
	}
	for e, files := range c.keyEpochs {
		if !haveKnown || e > known {
			stray = append(stray, files...)
			strayEpochs = append(strayEpochs, e)
		}
	}
	if len(stray) > 0 {
		sort.Strings(stray)
		slices.Sort(strayEpochs)
		rec := "no epoch record"
		if c.haveEpoch {
			rec = fmt.Sprintf("a record of epoch %d only", c.epoch.Epoch)
		}
		c.r.add(Result{Check: "keys", Status: Fail, Fatal: true, File: stray[0],
			Problem: fmt.Sprintf("key files of epoch(s) %v prove this node took part in them, but the store has %s: the store is missing or older than its keys (%s)",
				strayEpochs, rec, strings.Join(firstN(stray, 4), ", ")),
			Fix: c.restoreFix() + "; if the store is right and these files are strays, move them out of keys/"})
		return
	}
	if !c.haveEpoch {
		c.r.add(Result{Check: "keys", Status: OK, File: dir, Problem: "no key epoch yet"})
		return
	}
	_, ksKey, err := admin.Keys(c.o.KeyFile)
	if err != nil {
		return // reported by store
	}
	e := c.epoch
	if c.id != nil && !e.OnCommittee(c.id.Name()) {
		c.r.add(Result{Check: "keys", Status: OK, Epoch: e.Epoch, File: dir, Problem: fmt.Sprintf("epoch %d: this node is off the decryption committee (%d of %d members hold the key) and needs no key file", e.Epoch, len(e.Committee), e.Members)})
		return
	}
	need := fmt.Sprintf("epoch-%d", e.Epoch)
	var required []string
	if e.Installed && e.NeedsThreshold() {
		need = fmt.Sprintf("epoch-%d-threshold", e.Epoch)
		required = append(required, need)
	}
	var problems []*keystore.FileError
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		problems = append(problems, &keystore.FileError{Name: need, Path: filepath.Join(dir, need+".secret"), Kind: keystore.ErrNotFound, Problem: "missing: the whole keys/ directory is gone"})
	} else {
		ks, err := keystore.Open(dir, ksKey)
		if err != nil {
			c.r.add(Result{Check: "keys", Status: Fail, Fatal: true, File: dir, Problem: err.Error(), Fix: "chmod 700 the directory and 600 its files"})
			return
		}
		problems = ks.CheckEpoch(e.Epoch, required...)
	}
	fixShare := fmt.Sprintf("the node starts and answers queries but does not decrypt in epoch %d (the coordinator picks other decryptors); a new key epoch clears it, or restore keys/ with `fedstat node restore --data-dir %s BACKUP`", e.Epoch, c.o.DataDir)
	ok := true
	for _, p := range problems {
		if p.Name == need {
			ok = false
			c.r.add(Result{Check: "keys", Status: Fail, Epoch: e.Epoch, File: p.Path, Problem: fmt.Sprintf("the share this node decrypts with in epoch %d: %s", e.Epoch, p.Problem), Fix: fixShare})
			continue
		}
		c.r.add(Result{Check: "keys", Status: Warn, Epoch: e.Epoch, File: p.Path, Problem: p.Problem + " (not needed to decrypt in this epoch)"})
	}
	if ok {
		c.r.add(Result{Check: "keys", Status: OK, File: filepath.Join(dir, need+".secret"), Problem: fmt.Sprintf("epoch %d (%d of %d): the share this node decrypts with is present and intact", e.Epoch, e.Threshold, e.Members)})
	}
}
