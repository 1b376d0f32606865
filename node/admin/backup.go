package admin

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node/internal/evidence"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

// Backups and restores.
//
// A backup (`fedstat node backup`) is taken with the node daemon stopped:
// the store is locked by one process at a time, and a copy of the audit
// log, the key files and the store taken together is consistent only when
// nothing appends to any of them. It is a tar file (mode 0600) holding
//
//	fedstat-backup.json    what the backup holds (figures, epoch, audit head) and each file's SHA-256
//	kv.backup              Badger's backup stream of the store (kv.Backup), or
//	kv.backup.sealed       the same sealed under the operator key when the store is encrypted at rest
//	keys/epoch-N*.secret   the key files as they are on disk (sealed when an operator key is set)
//	audit.log              the audit log
//	ledger.hwm             the high-water mark, when there is one
//	node.toml              the node's configuration, only when asked for
//
// The store in it is not a Badger directory: it cannot be copied back by
// hand, only through Restore, which carries the spend forward. Without an
// operator key the backup holds the records in the clear: protect it as
// the data itself.
//
// A restore never lowers the spent budget: it takes, figure by figure
// (total, each analyst, number of charges), the highest of the backup's
// ledger and of everything the node proves now (its current store when it
// still opens, its high-water mark, its audit log), keeps the newer audit
// log (the current one when it verifies) with a budget.carried_forward
// entry, and keeps key files the backup lacks. The replaced store and log
// are moved aside, never deleted.

// Backup file names.
const (
	backupManifest = "fedstat-backup.json"
	backupKV       = "kv.backup"
	backupKVSealed = "kv.backup.sealed"
	backupAudit    = "audit.log"
	backupMark     = evidence.MarkFile
	backupConfig   = "node.toml"
)

// ErrDaemonRunning: the data directory is open in another process (the
// daemon): backups and restores need it stopped.
var ErrDaemonRunning = errors.New("admin: the node daemon (or another process) has this data directory open: stop it first")

// ErrBadBackup: the backup file is damaged, incomplete or not a backup.
var ErrBadBackup = errors.New("admin: not a usable backup")

// BackupOptions say what to back up.
type BackupOptions struct {
	// DataDir is the node's data directory. Required.
	DataDir string
	// AuditLog defaults to DataDir/audit.log.
	AuditLog string
	// KeyFile is the operator key file, when the store is encrypted at
	// rest; the backup's copy of the store is then sealed under it.
	KeyFile string
	// Config, when set, is the node's configuration file, included.
	Config string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Manifest describes a backup.
type Manifest struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	// Node is the node's id as its high-water mark names it ("" without
	// one).
	Node string `json:"node,omitempty"`
	// Ledger is the store's spend; Keys the number of keys in the store.
	Ledger ledger.Figures `json:"ledger"`
	Keys   int            `json:"keys"`
	Epoch  uint64         `json:"epoch"`
	// AuditEntries and AuditHead describe the audit log in the backup.
	AuditEntries int    `json:"audit_entries"`
	AuditHead    string `json:"audit_head"`
	Sealed       bool   `json:"sealed"`
	// Files maps each file in the backup to its SHA-256 (hex).
	Files map[string]string `json:"files"`
}

func (o *BackupOptions) defaults() {
	if o.AuditLog == "" {
		o.AuditLog = filepath.Join(o.DataDir, "audit.log")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func openForAdmin(dataDir, keyFile string, log *slog.Logger) (*kv.DB, error) {
	storeKey, _, err := Keys(keyFile)
	if err != nil {
		return nil, err
	}
	db, err := kv.Open(kv.Options{Dir: KVDir(dataDir), EncryptionKey: storeKey, Logger: log})
	if errors.Is(err, kv.ErrInUse) {
		return nil, fmt.Errorf("%w (%v)", ErrDaemonRunning, err)
	}
	return db, err
}

// Backup writes a backup of the data directory to out (through a
// temporary file renamed into place, synced). The daemon must be stopped
// (ErrDaemonRunning otherwise).
func Backup(ctx context.Context, o BackupOptions, out string) (*Manifest, error) {
	if o.DataDir == "" {
		return nil, ErrNoDataDir
	}
	o.defaults()
	if err := CheckDataDir(o.DataDir, NeedStore); err != nil {
		return nil, fmt.Errorf("admin: backup: %w", err)
	}
	if segs, _ := filepath.Glob(filepath.Join(ColumnDir(o.DataDir), "seg-*")); len(segs) > 0 {
		return nil, fmt.Errorf("%w: %s holds bulk imports, whose column files a backup does not hold yet; stop the node and copy the data directory instead", ErrBulkBackup, o.DataDir)
	}
	db, err := openForAdmin(o.DataDir, o.KeyFile, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("admin: backup: %w", err)
	}
	defer db.Close()
	m := &Manifest{Version: 1, Time: o.Now().UTC(), Files: map[string]string{}}
	if m.Ledger, err = ledger.ReadFigures(db); err != nil {
		return nil, err
	}
	if e, ok, err := evidence.StoredEpoch(db); err != nil {
		return nil, err
	} else if ok {
		m.Epoch = e.Epoch
	}
	if mk, err := evidence.ReadMark(filepath.Join(o.DataDir, evidence.MarkFile)); err == nil {
		m.Node = mk.Node
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+"-*")
	if err != nil {
		return nil, fmt.Errorf("admin: backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, err
	}
	tw := tar.NewWriter(tmp)
	add := func(name string, data []byte) error {
		sum := sha256.Sum256(data)
		m.Files[name] = hex.EncodeToString(sum[:])
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: m.Time, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	addFile := func(name, path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("admin: backup: %w", err)
		}
		return add(name, b)
	}

	// The store: Badger's backup stream, sealed when the store is
	// encrypted at rest, through a temporary file next to out (a tar entry
	// needs its size first).
	kvTmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+"-kv-*")
	if err != nil {
		return nil, fmt.Errorf("admin: backup: %w", err)
	}
	defer os.Remove(kvTmp.Name())
	defer kvTmp.Close()
	kvTmp.Chmod(0o600)
	bw := bufio.NewWriterSize(kvTmp, 1<<20)
	var w io.Writer = bw
	var sw *sealWriter
	if o.KeyFile != "" {
		op, err := ReadKeyFile(o.KeyFile)
		if err != nil {
			return nil, err
		}
		if sw, err = newSealWriter(bw, op); err != nil {
			return nil, err
		}
		w = sw
	}
	if m.Keys, err = db.Backup(w); err != nil {
		return nil, fmt.Errorf("admin: backup of the store: %w", err)
	}
	name := backupKV
	if sw != nil {
		if err := sw.Close(); err != nil {
			return nil, err
		}
		name, m.Sealed = backupKVSealed, true
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("admin: backup: %w", err)
	}
	size, err := kvTmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	if _, err := kvTmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: m.Time, Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tw, h), kvTmp); err != nil {
		return nil, fmt.Errorf("admin: backup: %w", err)
	}
	m.Files[name] = hex.EncodeToString(h.Sum(nil))
	kvTmp.Close()
	os.Remove(kvTmp.Name())

	// Key files, the audit log, the mark, the configuration.
	keyFiles, _ := filepath.Glob(filepath.Join(o.DataDir, "keys", "*.secret"))
	sort.Strings(keyFiles)
	for _, p := range keyFiles {
		if err := addFile("keys/"+filepath.Base(p), p); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(o.AuditLog); err == nil {
		a, err := evidence.ReadAudit(o.AuditLog)
		if err != nil {
			return nil, fmt.Errorf("admin: backup: the audit log does not verify, not backing it up: %w", err)
		}
		m.AuditEntries, m.AuditHead = a.Entries, a.Head
		if err := addFile(backupAudit, o.AuditLog); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(o.DataDir, evidence.MarkFile)); err == nil {
		if err := addFile(backupMark, filepath.Join(o.DataDir, evidence.MarkFile)); err != nil {
			return nil, err
		}
	}
	if o.Config != "" {
		if err := addFile(backupConfig, o.Config); err != nil {
			return nil, err
		}
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: backupManifest, Mode: 0o600, Size: int64(len(mb)), ModTime: m.Time, Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(mb); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("admin: backup: %w", err)
	}
	syncDir(filepath.Dir(out))
	return m, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// extracted is a backup read into a staging directory.
type extracted struct {
	m *Manifest
	// small files (keys, the mark) in memory; the store's stream and the
	// audit log as files in the staging directory ("" when absent).
	small          map[string][]byte
	kvPath, kvName string
	auditPath      string
}

// readBackup reads the backup in into dir (the store's stream and the
// audit log as files, the rest in memory) and checks every file against
// the manifest.
func readBackup(in, dir string) (*extracted, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	defer f.Close()
	x := &extracted{small: map[string][]byte{}}
	sums := map[string]string{}
	var mb []byte
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadBackup, in, err)
		}
		if h.Typeflag != tar.TypeReg || strings.Contains(h.Name, "..") || strings.HasPrefix(h.Name, "/") {
			return nil, fmt.Errorf("%w: %s: unexpected entry %q", ErrBadBackup, in, h.Name)
		}
		if _, dup := sums[h.Name]; dup {
			return nil, fmt.Errorf("%w: %s: %s twice", ErrBadBackup, in, h.Name)
		}
		hash := sha256.New()
		switch h.Name {
		case backupManifest:
			if mb, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadBackup, in, err)
			}
			continue
		case backupKV, backupKVSealed, backupAudit:
			p := filepath.Join(dir, h.Name)
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(io.MultiWriter(out, hash), tr)
			out.Close()
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %v", ErrBadBackup, in, h.Name, err)
			}
			if h.Name == backupAudit {
				x.auditPath = p
			} else {
				x.kvPath, x.kvName = p, h.Name
			}
		default:
			b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadBackup, in, err)
			}
			hash.Write(b)
			x.small[h.Name] = b
		}
		sums[h.Name] = hex.EncodeToString(hash.Sum(nil))
	}
	if mb == nil {
		return nil, fmt.Errorf("%w: %s has no %s (cut short, or not made by `fedstat node backup`)", ErrBadBackup, in, backupManifest)
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil || m.Version != 1 {
		return nil, fmt.Errorf("%w: %s: %s does not decode (version %d): %v", ErrBadBackup, in, backupManifest, m.Version, err)
	}
	if m.Ledger.Analysts == nil {
		m.Ledger.Analysts = map[string]float64{}
	}
	for name, want := range m.Files {
		got, ok := sums[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s lacks %s", ErrBadBackup, in, name)
		}
		if got != want {
			return nil, fmt.Errorf("%w: %s: %s is damaged (checksum mismatch)", ErrBadBackup, in, name)
		}
	}
	for name := range sums {
		if _, ok := m.Files[name]; !ok {
			return nil, fmt.Errorf("%w: %s: %s is not in its manifest", ErrBadBackup, in, name)
		}
	}
	x.m = &m
	return x, nil
}

// RestoreOptions say where to restore.
type RestoreOptions struct {
	// DataDir is the node's data directory. Required.
	DataDir string
	// AuditLog defaults to DataDir/audit.log.
	AuditLog string
	// KeyFile is the operator key file, when the store is encrypted at
	// rest (the backup's sealed store opens with it).
	KeyFile string
	// Identity, when set, is the node's certificate and key: the restore
	// then writes a new high-water mark. Otherwise the mark is moved aside
	// (its figures are carried into the store and the audit log) and the
	// node writes it anew at start.
	Identity *pki.Identity
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// RestoreSummary says what a restore did.
type RestoreSummary struct {
	Backup *Manifest `json:"backup"`
	// Spend is the ledger after the restore, and what each source showed.
	Spend        ledger.Figures  `json:"spend"`
	BackupLedger ledger.Figures  `json:"backup_ledger"`
	Current      *ledger.Figures `json:"current_ledger,omitempty"`
	Mark         *ledger.Figures `json:"mark,omitempty"`
	Audit        *ledger.Figures `json:"audit,omitempty"`
	// CurrentStore says why the current store could not be read, if so.
	CurrentStore string `json:"current_store,omitempty"`
	// AuditKept: the current audit log was kept (else the backup's was
	// put back).
	AuditKept bool `json:"audit_kept"`
	// Records is the number of per-query records (ledger, commits,
	// releases) carried over from the current store.
	Records int `json:"records"`
	// Aside lists what was moved out of the way.
	Aside []string `json:"aside"`
	// KeysRestored lists the key files put back from the backup.
	KeysRestored []string `json:"keys_restored"`
}

// Prefixes of the per-query records a restore carries over from a store
// that still opens: ledger entries and answers, carry-forwards, commit and
// release records, and the noisy shares of series intervals kept with their
// answers (so that an answer carried over can still be sent in a later key
// epoch).
var carriedPrefixes = []string{"l/q/", "l/r/", "l/carried/", "n/commit/", "n/release/", "n/series-share/"}

// Restore puts the backup in into the data directory, carrying the spend
// forward as described above. The daemon must be stopped. The data
// directory must exist, empty (a new machine) or a node's (CheckDataDir,
// NeedDirectory): a mistyped path is refused rather than filled.
func Restore(ctx context.Context, o RestoreOptions, in string) (*RestoreSummary, error) {
	if o.DataDir == "" {
		return nil, ErrNoDataDir
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
	if err := CheckDataDir(o.DataDir, NeedDirectory); err != nil {
		return nil, fmt.Errorf("admin: restore: %w", err)
	}
	now := o.Now().UTC()
	stamp := now.Format("20060102T150405Z")
	storeKey, _, err := Keys(o.KeyFile)
	if err != nil {
		return nil, err
	}
	kvDir := KVDir(o.DataDir)
	if err := kv.Check(kv.Options{Dir: kvDir, EncryptionKey: storeKey}); errors.Is(err, kv.ErrInUse) {
		return nil, fmt.Errorf("admin: restore: %w (%v)", ErrDaemonRunning, err)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	staging := filepath.Join(o.DataDir, ".restore-"+stamp)
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)
	x, err := readBackup(in, staging)
	if err != nil {
		return nil, err
	}
	m := x.m
	sum := &RestoreSummary{Backup: m, BackupLedger: m.Ledger}

	// What the node proves now.
	var floors []ledger.Figures
	var cur *kv.DB
	if _, err := os.Stat(kvDir); err == nil {
		cur, err = kv.Open(kv.Options{Dir: kvDir, EncryptionKey: storeKey, Logger: o.Logger})
		switch {
		case errors.Is(err, kv.ErrInUse):
			return nil, fmt.Errorf("admin: restore: %w (%v)", ErrDaemonRunning, err)
		case err != nil:
			sum.CurrentStore = err.Error()
			cur = nil
		default:
			defer func() {
				if cur != nil {
					cur.Close()
				}
			}()
			f, err := ledger.ReadFigures(cur)
			if err != nil {
				return nil, err
			}
			sum.Current = &f
			floors = append(floors, f)
		}
	} else {
		sum.CurrentStore = "missing"
	}
	markPath := filepath.Join(o.DataDir, evidence.MarkFile)
	if mk, err := evidence.ReadMark(markPath); err == nil {
		ok := true
		if o.Identity != nil {
			ok = mk.Verify(markPath, o.Identity.CA, o.Identity.Name()) == nil
		} else if m.Node != "" {
			ok = mk.Verify(markPath, nil, m.Node) == nil
		}
		if ok {
			f := mk.Spend.Clone()
			sum.Mark = &f
			floors = append(floors, f)
		}
	}
	var curAudit *evidence.Audit
	if a, err := evidence.ReadAudit(o.AuditLog); err == nil {
		curAudit = a
		f := a.Spend.Clone()
		sum.Audit = &f
		floors = append(floors, f)
	}

	// The backup's store, built aside.
	ndb, err := kv.Open(kv.Options{Dir: filepath.Join(staging, "kv"), EncryptionKey: storeKey, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("admin: restore: %w", err)
	}
	closeNew := func() {
		if ndb != nil {
			ndb.Close()
			ndb = nil
		}
	}
	defer closeNew()
	if x.kvPath == "" {
		return nil, fmt.Errorf("%w: %s holds no store", ErrBadBackup, in)
	}
	kvf, err := os.Open(x.kvPath)
	if err != nil {
		return nil, err
	}
	defer kvf.Close()
	var stream io.Reader = bufio.NewReaderSize(kvf, 1<<20)
	if x.kvName == backupKVSealed {
		if o.KeyFile == "" {
			return nil, fmt.Errorf("%w: %s: its store is sealed under an operator key: give --key-file", ErrBadBackup, in)
		}
		op, err := ReadKeyFile(o.KeyFile)
		if err != nil {
			return nil, err
		}
		if stream, err = newSealReader(stream, op); err != nil {
			return nil, err
		}
	}
	if _, err := ndb.Load(stream); err != nil {
		return nil, fmt.Errorf("admin: restore: loading the backup's store: %w", err)
	}
	bl, err := ledger.ReadFigures(ndb)
	if err != nil {
		return nil, err
	}
	floors = append(floors, bl)

	// Per-query records and a newer epoch from the current store.
	if cur != nil {
		n, err := carryRecords(cur, ndb)
		if err != nil {
			return nil, fmt.Errorf("admin: restore: carrying the current store's records: %w", err)
		}
		sum.Records = n
	}
	floor := ledger.MaxFigures(floors...)
	reason := fmt.Sprintf("restore of %s (taken %s): the spend is the highest of the backup's ledger, the current store, the high-water mark and the audit log", filepath.Base(in), m.Time.Format(time.RFC3339))
	if sum.Spend, err = ledger.CarryForward(ndb, floor, reason, now); err != nil {
		return nil, err
	}
	restoredEpoch, haveEpoch, err := evidence.StoredEpoch(ndb)
	if err != nil {
		return nil, err
	}

	// The audit log: the current one when it verifies, else the backup's.
	auditTarget := o.AuditLog
	var newLog string
	if curAudit != nil {
		sum.AuditKept = true
	} else {
		newLog = o.AuditLog + ".restore-" + stamp
		if x.auditPath != "" {
			if err := moveFile(x.auditPath, newLog); err != nil {
				return nil, err
			}
		}
		auditTarget = newLog
	}
	alog, err := audit.Open(auditTarget)
	if err != nil {
		return nil, fmt.Errorf("admin: restore: the audit log: %w", err)
	}
	actor := m.Node
	if o.Identity != nil {
		actor = o.Identity.Name()
	}
	if actor == "" {
		actor = "node-admin"
	}
	details := evidence.CarriedDetails(sum.Spend, reason, map[string]any{"backup_time": m.Time.Format(time.RFC3339), "backup_ledger": bl.String()})
	if _, err := alog.AppendEntry(ctx, audit.Entry{Actor: actor, Action: evidence.ActionCarriedForward, Details: details}); err != nil {
		alog.Close()
		return nil, err
	}
	seq, head := alog.Head()
	alog.Close()
	if err := evidence.WriteAnchor(ndb, evidence.Anchor{Seq: seq, Hash: head}); err != nil {
		return nil, err
	}
	closeNew()

	// Swap the stores and logs; move the old ones aside.
	if cur != nil {
		cur.Close()
		cur = nil
	}
	aside := func(path string) error {
		if _, err := os.Stat(path); err != nil {
			return nil
		}
		to := path + ".replaced-" + stamp
		if err := os.Rename(path, to); err != nil {
			return err
		}
		sum.Aside = append(sum.Aside, to)
		return nil
	}
	if err := aside(kvDir); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(staging, "kv"), kvDir); err != nil {
		return nil, err
	}
	if newLog != "" {
		if err := aside(o.AuditLog); err != nil {
			return nil, err
		}
		if err := os.Rename(newLog, o.AuditLog); err != nil {
			return nil, err
		}
	}

	// Key files: the backup's where the current ones are missing; key
	// files of epochs newer than the restored store's record moved aside
	// (they could not be used, and would make the start refuse).
	keysDir := filepath.Join(o.DataDir, "keys")
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return nil, err
	}
	for name, b := range x.small {
		base, ok := strings.CutPrefix(name, "keys/")
		if !ok {
			continue
		}
		p := filepath.Join(keysDir, base)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := writeFileSync(p, b); err != nil {
			return nil, err
		}
		sum.KeysRestored = append(sum.KeysRestored, p)
	}
	sort.Strings(sum.KeysRestored)
	keyFiles, _ := filepath.Glob(filepath.Join(keysDir, "epoch-*.secret"))
	for _, p := range keyFiles {
		var e uint64
		if _, err := fmt.Sscanf(filepath.Base(p), "epoch-%d", &e); err != nil {
			continue
		}
		if !haveEpoch || e > restoredEpoch.Epoch {
			to := filepath.Join(o.DataDir, "keys.aside-"+stamp)
			os.MkdirAll(to, 0o700)
			if err := os.Rename(p, filepath.Join(to, filepath.Base(p))); err != nil {
				return nil, err
			}
			sum.Aside = append(sum.Aside, filepath.Join(to, filepath.Base(p)))
		}
	}

	// The mark.
	if o.Identity != nil {
		mk := evidence.Mark{Node: o.Identity.Name(), Time: now, Spend: sum.Spend, AuditSeq: seq, AuditHead: head, Cert: o.Identity.Cert.Raw}
		if haveEpoch {
			mk.Epoch = restoredEpoch.Epoch
		}
		if err := evidence.WriteMark(markPath, mk, o.Identity.Key); err != nil {
			return nil, err
		}
	} else if err := aside(markPath); err != nil {
		return nil, err
	}
	syncDir(o.DataDir)
	return sum, nil
}

// carryRecords copies the per-query records of from that to lacks, and
// from's epoch record when it is newer than to's, in watermarked updates
// of at most a few MB each.
func carryRecords(from, to *kv.DB) (int, error) {
	n := 0
	var batch [][2][]byte
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := to.UpdateWatermarked(func(tx *kv.Txn) error {
			for _, kvp := range batch {
				if err := tx.Set(kvp[0], kvp[1]); err != nil {
					return err
				}
			}
			return nil
		})
		n += len(batch)
		batch, size = nil, 0
		return err
	}
	for _, p := range carriedPrefixes {
		// Streamed: the stored answers alone can be GBs.
		if err := from.View(func(tx *kv.Txn) error {
			return tx.Iterate([]byte(p), func(k, v []byte) error {
				if _, err := to.Get(k); err == nil {
					return nil
				} else if !errors.Is(err, kv.ErrNotFound) {
					return err
				}
				if size+len(k)+len(v) > 4<<20 {
					if err := flush(); err != nil {
						return err
					}
				}
				batch = append(batch, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
				size += len(k) + len(v)
				return nil
			})
		}); err != nil {
			return n, err
		}
	}
	if err := flush(); err != nil {
		return n, err
	}
	fe, okF, err := evidence.StoredEpoch(from)
	if err != nil || !okF {
		return n, err
	}
	te, okT, err := evidence.StoredEpoch(to)
	if err != nil {
		return n, err
	}
	if !okT || fe.Epoch > te.Epoch || (fe.Epoch == te.Epoch && fe.Installed && !te.Installed) {
		if err := evidence.CopyEpoch(from, to); err != nil {
			return n, err
		}
	}
	return n, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// moveFile renames from to to, copying when they are on different file
// systems (an audit log configured outside the data directory).
func moveFile(from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := writeFileSync(to, b); err != nil {
		return err
	}
	return os.Remove(from)
}
