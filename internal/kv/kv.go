// Package kv is fedstat's embedded key-value store: a thin wrapper over Badger
// v4, and the only package that imports Badger.
//
// Transactions are serialisable. A single Update is atomic and durable when
// it returns (writes are synced). Badger limits the size of one transaction;
// callers that write more than fits (large imports) use a Batch for the bulk
// and make it visible with one small Update (see node's store for the
// pattern).
//
// # Damage, rollback and full disks
//
// kv stands between Badger and three ways a store goes wrong on real
// machines, so that each ends in a typed error instead of a crash or a
// silently smaller store:
//
//   - damaged or missing files: Open looks at the directory before Badger
//     does (see check.go) and returns a *DamageError (ErrDamaged) naming the
//     file; Badger never gets to delete table files it cannot account for.
//     A panic inside Badger while opening or reading is caught at the kv
//     boundary and becomes a *DamageError too; the DB then refuses further
//     use.
//   - lost updates: UpdateWatermarked and the WATERMARK file (see
//     watermark.go) make a store that lost committed updates fail Open with
//     ErrRolledBack.
//   - a full file system: kv allocates the disk blocks of Badger's
//     memory-mapped logs ahead of Badger's writes and refuses writes (and
//     Open) when less than Options.MinFreeBytes is available, with a
//     *NoSpaceError (ErrNoSpace); see space.go.
//
// Check inspects a closed store without changing it.
package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options configure Open.
type Options struct {
	// Dir is the directory of the store. Required unless InMemory.
	Dir string
	// InMemory keeps everything in memory (tests). Defaults to false.
	InMemory bool
	// EncryptionKey, when set, encrypts data at rest with AES (16, 24 or 32
	// bytes). The same key must be given at every open. Defaults to none.
	EncryptionKey []byte
	// Logger receives Badger's messages at debug/info/warn/error, and kv's
	// warnings (moved orphan tables, a file system that cannot
	// preallocate). Defaults to discarding them.
	Logger *slog.Logger
	// MemTableSize is the size of Badger's memtable, hence of one
	// write-ahead log file (twice this, allocated progressively) and, at
	// 15 % of it, of the largest transaction. Defaults to 64 MiB.
	MemTableSize int64
	// MinFreeBytes is the free space kv keeps on the store's file system for
	// Badger's background work (a memtable flush, a level-0 compaction):
	// Open and every write are refused with ErrNoSpace when less than this
	// (plus the write) is available. Defaults to 4 x MemTableSize (256 MiB
	// at the default).
	MinFreeBytes uint64
}

func (o Options) withDefaults() Options {
	if o.MemTableSize <= 0 {
		o.MemTableSize = 64 << 20
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 4 * uint64(o.MemTableSize)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// valueThreshold is the value size from which Badger stores values in the
// value log: Badger's 1 MiB, but no more than its largest batch.
func valueThreshold(memTableSize int64) int64 {
	return min(1<<20, 15*memTableSize/100)
}

// lockName is the lock kv holds for as long as a store is open; it is taken
// before anything in the directory is looked at or moved.
const lockName = "kv.lock"

// DB is an open store. It is safe for concurrent use.
type DB struct {
	db      *badger.DB
	dir     string // "" in memory
	o       Options
	log     *slog.Logger
	vthresh int64
	space   *space // nil in memory
	lock    *os.File

	// damage is the first damage found while running; the store refuses
	// all further use.
	damage atomic.Pointer[DamageError]

	wmu   sync.Mutex // serialises watermarked updates
	side  *sidecar
	wmErr error // the watermark file could not be written

	closeMu sync.Mutex
	closed  atomic.Bool
}

// Open opens (creating if needed) the store described by o. Besides the
// errors of the file system it returns a *DamageError (ErrDamaged,
// ErrRolledBack) for a damaged or rolled-back store, a *NoSpaceError
// (ErrNoSpace) when the file system is too full to open safely, and
// ErrInUse when another process has the store open.
func Open(o Options) (*DB, error) {
	if !o.InMemory && o.Dir == "" {
		return nil, errors.New("kv: Options.Dir is required")
	}
	if n := len(o.EncryptionKey); n > 0 && n != 16 && n != 24 && n != 32 {
		return nil, ErrBadKeySize
	}
	o = o.withDefaults()
	vthresh := valueThreshold(o.MemTableSize)
	bo := badger.DefaultOptions(o.Dir).
		WithInMemory(o.InMemory).
		WithSyncWrites(true).
		WithCompression(options.ZSTD).
		WithNumVersionsToKeep(1).
		WithMemTableSize(o.MemTableSize).
		WithValueThreshold(vthresh).
		// Verify each table block's checksum when it is read (kv checks
		// every block of every table itself before Badger opens them),
		// and value-log entries too.
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		// Serialisable transactions (Badger's default, stated).
		WithDetectConflicts(true).
		WithLogger(slogAdapter{l: o.Logger})
	if len(o.EncryptionKey) > 0 {
		// Badger needs a block/index cache when encryption is on.
		bo = bo.WithEncryptionKey(o.EncryptionKey).WithIndexCacheSize(64 << 20)
	}
	d := &DB{o: o, log: o.Logger, vthresh: vthresh}
	if o.InMemory {
		bo = bo.WithDir("").WithValueDir("")
		db, err := openBadger("", bo)
		if err != nil {
			return nil, err
		}
		d.db = db
		return d, nil
	}
	d.dir = o.Dir
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(o.Dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %s (%v)", ErrInUse, o.Dir, err)
	}
	d.lock = lock
	if err := d.open(bo); err != nil {
		lock.Close()
		return nil, err
	}
	return d, nil
}

func (d *DB) open(bo badger.Options) error {
	in, err := inspect(d.dir, d.o, d.log)
	if err != nil {
		return err
	}
	mark, haveMark, err := readWatermark(d.dir)
	if err != nil {
		return err
	}
	if err := checkOpenSpace(d.o, in); err != nil {
		return err
	}
	// Empty memtable files are the ones kv made ready for a rotation that
	// did not come; Badger refuses to open with them.
	for name, size := range in.files.mems {
		if size == 0 {
			if err := os.Remove(filepath.Join(d.dir, name)); err != nil {
				return fmt.Errorf("kv: %w", err)
			}
		}
	}
	if err := quarantine(d.dir, in.orphans, d.log); err != nil {
		return err
	}
	db, err := openBadger(d.dir, bo)
	if err != nil {
		return err
	}
	d.db = db
	fail := func(err error) error {
		if d.space != nil {
			d.space.release()
		}
		db.Close()
		return err
	}
	d.space = &space{dir: d.dir, minFree: d.o.MinFreeBytes, memSize: 2 * d.o.MemTableSize,
		chunk: min(4<<20, 2*d.o.MemTableSize), log: d.log, prealloc: true}
	if err := d.space.start(); err != nil {
		return fail(err)
	}
	stored, err := d.storedMark()
	if err != nil {
		return fail(err)
	}
	switch {
	case haveMark && stored < mark:
		if len(in.replay) == 0 {
			if noted := readRollbackNote(d.dir); noted != nil {
				return fail(noted)
			}
		}
		file, how := "", "no write-ahead log was replayed at this open (table files or the MANIFEST were replaced by older copies, or an earlier open replayed a damaged log)"
		if len(in.replay) > 0 {
			file = in.replay[0]
			how = fmt.Sprintf("Badger replayed the write-ahead log (%s) and silently stopped at a damaged entry", strings.Join(in.replay, ", "))
		}
		derr := &DamageError{Dir: d.dir, File: file, Kind: ErrRolledBack,
			Problem: fmt.Sprintf("%d committed watermarked update(s) are missing: the store is at watermark %d but %s records %d; %s", mark-stored, stored, watermarkFile, mark, how)}
		if len(in.replay) > 0 {
			writeRollbackNote(d.dir, derr)
		}
		return fail(derr)
	case !haveMark && stored > 0:
		return fail(damaged(d.dir, watermarkFile, "the watermark file is missing but the store has %d watermarked updates (it is what detects lost updates; it was deleted or not restored with the store)", stored))
	case !haveMark:
		if err := createWatermark(d.dir, 0); err != nil {
			return fail(err)
		}
	}
	side, err := openSidecar(d.dir)
	if err != nil {
		return fail(err)
	}
	d.side = side
	if stored > mark {
		// A crash between a commit and the file write: move the file on.
		if err := side.write(stored); err != nil {
			side.close()
			return fail(fmt.Errorf("kv: %s: %w", side.path, err))
		}
	}
	return nil
}

// openBadger opens Badger, turning a panic (a damaged write-ahead log can
// make Badger's replay panic in this goroutine) into a *DamageError.
func openBadger(dir string, bo badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, damaged(dir, "", "Badger panicked while opening the store (replaying its write-ahead log): %s", firstLine(fmt.Sprint(r)))
		}
	}()
	db, err = badger.Open(bo)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		return nil, fmt.Errorf("kv: open %s: wrong encryption key: %w", dir, err)
	case isNoSpace(err):
		free, _, _ := freeBytes(dir)
		return nil, &NoSpaceError{Path: dir, Op: "open", Free: free, Err: err}
	}
	return nil, fmt.Errorf("kv: open %s: %w", dir, err)
}

// Close flushes and closes the store. When the file system has no room
// for the flush of the memtable, Close returns a *NoSpaceError and leaves
// Badger open (its write-ahead log holds every committed update and is
// replayed at the next Open); the process should then exit.
func (d *DB) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed.Load() {
		return nil
	}
	d.closed.Store(true)
	if d.space != nil {
		if err := d.space.closing(); err != nil {
			return err
		}
	}
	err := d.db.Close()
	if d.side != nil {
		if cerr := d.side.close(); err == nil {
			err = cerr
		}
	}
	if d.lock != nil {
		d.lock.Close()
	}
	return err
}

// usable returns the reason the store cannot be used, if any.
func (d *DB) usable() error {
	if d.closed.Load() {
		return ErrClosed
	}
	if e := d.damage.Load(); e != nil {
		return e
	}
	return nil
}

// Txn is a transaction. It must not be used after the function that received
// it returns.
type Txn struct {
	t *badger.Txn
	d *DB
	// Upper bounds of the bytes this transaction adds to Badger's
	// write-ahead log and value log.
	wal, vlog uint64
	internal  bool
}

// logBytes bounds what one entry costs in Badger's logs.
func (d *DB) logBytes(key, value []byte) (wal, vlog uint64) {
	k, v := uint64(len(key)), uint64(len(value))
	if int64(v) >= d.vthresh {
		return k + entryOverhead + 12, k + entryOverhead + v
	}
	return k + entryOverhead + v, 0
}

func (d *DB) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %v", ErrTxnTooBig, err)
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	case errors.Is(err, badger.ErrDBClosed):
		return ErrClosed
	case isNoSpace(err):
		free, _, _ := freeBytes(d.dir)
		return &NoSpaceError{Path: d.dir, Op: "write", Free: free, Err: err}
	}
	return err
}

// Get returns a copy of the value of key, or ErrNotFound.
func (t *Txn) Get(key []byte) (v []byte, err error) {
	defer t.d.catch("read", &err)
	it, err := t.t.Get(key)
	if err != nil {
		return nil, t.d.mapErr(err)
	}
	v, err = it.ValueCopy(nil)
	return v, t.d.mapErr(err)
}

// Set writes key=value.
func (t *Txn) Set(key, value []byte) error {
	if !t.internal && bytes.HasPrefix(key, reservedPrefix) {
		return ErrReservedKey
	}
	if err := t.d.mapErr(t.t.Set(key, value)); err != nil {
		return err
	}
	w, v := t.d.logBytes(key, value)
	t.wal, t.vlog = t.wal+w, t.vlog+v
	return nil
}

// Delete removes key.
func (t *Txn) Delete(key []byte) error {
	if !t.internal && bytes.HasPrefix(key, reservedPrefix) {
		return ErrReservedKey
	}
	if err := t.d.mapErr(t.t.Delete(key)); err != nil {
		return err
	}
	w, _ := t.d.logBytes(key, nil)
	t.wal += w
	return nil
}

// Iterate calls fn for every key with the given prefix, in key order. The key
// and value slices are valid only during the call. Returning an error stops
// the iteration and returns that error.
func (t *Txn) Iterate(prefix []byte, fn func(key, value []byte) error) (err error) {
	defer t.d.catch("read", &err)
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := t.t.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		if hidden(prefix, item.Key()) {
			continue
		}
		err := item.Value(func(v []byte) error {
			return callUser(func() error { return fn(item.Key(), v) })
		})
		if err != nil {
			return t.d.mapErr(err)
		}
	}
	return nil
}

// IterateKeys calls fn for every key with the given prefix without reading
// values.
func (t *Txn) IterateKeys(prefix []byte, fn func(key []byte) error) (err error) {
	defer t.d.catch("read", &err)
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := t.t.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()
		if hidden(prefix, k) {
			continue
		}
		if err := callUser(func() error { return fn(k) }); err != nil {
			return err
		}
	}
	return nil
}

// hidden reports whether key is kv's own (the watermark) and the caller did
// not ask for that namespace: iterations skip such keys.
func hidden(prefix, key []byte) bool {
	return len(key) > 0 && key[0] == '!' && bytes.HasPrefix(key, reservedPrefix) && !bytes.HasPrefix(prefix, reservedPrefix)
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(*Txn) error) (err error) {
	if err := d.usable(); err != nil {
		return err
	}
	defer d.catch("read", &err)
	txn := d.db.NewTransaction(false)
	defer txn.Discard()
	err = callUser(func() error { return fn(&Txn{t: txn, d: d}) })
	if e := d.damage.Load(); e != nil {
		return e
	}
	return err
}

// Update runs fn in a read-write transaction and commits it durably if fn
// returns nil. A conflict with a concurrent transaction is retried up to 10
// times, so fn must be safe to run again. A write is refused with a
// *NoSpaceError when the file system is too full (nothing is written).
func (d *DB) Update(fn func(*Txn) error) error {
	_, err := d.update(fn, false)
	return err
}

func (d *DB) update(fn func(*Txn) error, watermark bool) (mark uint64, err error) {
	for range 10 {
		mark, err = d.updateOnce(fn, watermark)
		if !errors.Is(err, ErrConflict) {
			return mark, err
		}
	}
	return 0, err
}

func (d *DB) updateOnce(fn func(*Txn) error, watermark bool) (mark uint64, err error) {
	if err := d.usable(); err != nil {
		return 0, err
	}
	defer d.catch("write", &err)
	txn := d.db.NewTransaction(true)
	defer txn.Discard()
	t := &Txn{t: txn, d: d}
	if err := callUser(func() error { return fn(t) }); err != nil {
		return 0, d.mapErr(err)
	}
	if e := d.damage.Load(); e != nil {
		return 0, e
	}
	if watermark {
		t.internal = true
		cur, err := t.Get(watermarkKey)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return 0, err
		case len(cur) != 8:
			return 0, damaged(d.dir, "", "the stored watermark has %d bytes, want 8", len(cur))
		default:
			mark = binary.BigEndian.Uint64(cur)
		}
		mark++
		if err := t.Set(watermarkKey, binary.BigEndian.AppendUint64(nil, mark)); err != nil {
			return 0, err
		}
	}
	if t.wal == 0 && t.vlog == 0 {
		return mark, d.mapErr(txn.Commit()) // nothing to write
	}
	wal := t.wal + commitOverhead
	if d.space != nil {
		if err := d.space.reserve(wal, t.vlog); err != nil {
			return 0, err
		}
		defer d.space.done(wal, t.vlog)
	}
	return mark, d.mapErr(txn.Commit())
}

// UpdateWatermarked is Update for writes whose loss must never go unseen
// (budget debits): in the same transaction it advances the store's
// watermark, and once the commit is durable it records the new watermark
// in the WATERMARK file (synced) before returning it. An Open that finds the
// store behind that file fails with ErrRolledBack. See watermark.go for the
// whole contract.
//
// Watermarked updates are serialised with each other. If the commit
// succeeded but the file could not be written, the error wraps ErrWatermark
// (the update IS committed), and later watermarked updates are refused
// until the file can be written again.
func (d *DB) UpdateWatermarked(fn func(*Txn) error) (uint64, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.wmErr != nil && d.side != nil {
		cur, err := d.Watermark()
		if err != nil {
			return 0, err
		}
		if err := d.side.write(cur); err != nil {
			return 0, fmt.Errorf("%w: %s: %v (refusing watermarked updates until it can be written)", ErrWatermark, d.side.path, err)
		}
		d.wmErr = nil
	}
	mark, err := d.update(fn, true)
	if err != nil {
		return 0, err
	}
	if d.side != nil {
		if err := d.side.write(mark); err != nil {
			d.wmErr = err
			return mark, fmt.Errorf("%w: the update is committed (watermark %d) but %s could not be written: %v", ErrWatermark, mark, d.side.path, err)
		}
	}
	return mark, nil
}

// Watermark returns the number of watermarked updates the store holds.
func (d *DB) Watermark() (uint64, error) {
	if err := d.usable(); err != nil {
		return 0, err
	}
	return d.storedMark()
}

func (d *DB) storedMark() (n uint64, err error) {
	err = d.View(func(t *Txn) error {
		v, err := t.Get(watermarkKey)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil:
			return err
		case len(v) != 8:
			return damaged(d.dir, "", "the stored watermark has %d bytes, want 8", len(v))
		}
		n = binary.BigEndian.Uint64(v)
		return nil
	})
	return n, err
}

// Get returns a copy of the value of key, or ErrNotFound.
func (d *DB) Get(key []byte) (v []byte, err error) {
	err = d.View(func(t *Txn) error {
		v, err = t.Get(key)
		return err
	})
	return v, err
}

// Batch writes many keys fast but not atomically: a crash may leave any
// subset written, and so may an error or Cancel. Use it only for keys that
// nothing reads until a later Update makes them reachable. A Batch is not
// safe for concurrent use.
type Batch struct {
	d  *DB
	wb *badger.WriteBatch
	// Log bytes reserved with the store's space accounting and not yet
	// reported done, and the part of wal not yet used by queued entries.
	wal, vlog, credit uint64
	queued            uint64
}

const (
	// batchReserve is the step in which a Batch reserves log space.
	batchReserve = 1 << 20
	// batchFlushEvery bounds the bytes a Batch has in flight: it waits for
	// Badger to write them before queueing more (so that the space
	// accounting stays tight).
	batchFlushEvery = 8 << 20
)

// NewBatch starts a batch.
func (d *DB) NewBatch() *Batch { return &Batch{d: d, wb: d.db.NewWriteBatch()} }

func (b *Batch) queue(key, value []byte, del bool) (err error) {
	if err := b.d.usable(); err != nil {
		return err
	}
	if bytes.HasPrefix(key, reservedPrefix) {
		return ErrReservedKey
	}
	defer b.d.catch("write", &err)
	w, v := b.d.logBytes(key, value)
	if b.d.space != nil {
		if w > b.credit {
			step := max(batchReserve, w) + commitOverhead
			if err := b.d.space.reserve(step, 0); err != nil {
				return err
			}
			b.wal += step
			b.credit += step
		}
		if v > 0 {
			if err := b.d.space.reserve(0, v); err != nil {
				return err
			}
			b.vlog += v
		}
		b.credit -= w
	}
	if del {
		err = b.wb.Delete(key)
	} else {
		err = b.wb.Set(key, value)
	}
	if err != nil {
		return b.d.mapErr(err)
	}
	b.queued += w + v
	if b.queued >= batchFlushEvery {
		if err := b.flush(); err != nil {
			return err
		}
		b.wb = b.d.db.NewWriteBatch()
	}
	return nil
}

// flush waits for everything queued and settles the space accounting.
func (b *Batch) flush() error {
	err := b.wb.Flush()
	b.settle()
	return b.d.mapErr(err)
}

func (b *Batch) settle() {
	if b.d.space != nil && (b.wal > 0 || b.vlog > 0) {
		b.d.space.done(b.wal, b.vlog)
	}
	b.wal, b.vlog, b.credit, b.queued = 0, 0, 0, 0
}

// Set queues key=value. The slices must not be modified afterwards.
func (b *Batch) Set(key, value []byte) error { return b.queue(key, value, false) }

// Delete queues the removal of key.
func (b *Batch) Delete(key []byte) error { return b.queue(key, nil, true) }

// Flush writes everything queued and waits for it to be durable.
func (b *Batch) Flush() (err error) {
	if err := b.d.usable(); err != nil {
		b.wb.Cancel()
		b.settle()
		return err
	}
	defer b.d.catch("write", &err)
	return b.flush()
}

// Cancel drops what is still queued (what the batch already handed to
// Badger may be written).
func (b *Batch) Cancel() {
	b.wb.Cancel()
	b.settle()
}

// DropPrefix removes every key with one of the prefixes.
func (d *DB) DropPrefix(prefixes ...[]byte) (err error) {
	if err := d.usable(); err != nil {
		return err
	}
	for _, p := range prefixes {
		if bytes.HasPrefix(reservedPrefix, p) {
			return fmt.Errorf("%w: DropPrefix(%q) would drop it", ErrReservedKey, p)
		}
	}
	if d.space != nil {
		// Badger flushes the memtable to a table first.
		if err := d.space.check("drop prefix", 0); err != nil {
			return err
		}
		defer d.space.refresh()
	}
	defer d.catch("write", &err)
	return d.mapErr(d.db.DropPrefix(prefixes...))
}

// Sync makes all writes so far durable.
func (d *DB) Sync() error {
	if err := d.usable(); err != nil {
		return err
	}
	return d.mapErr(d.db.Sync())
}

// PrefixEnd returns the smallest key greater than every key with prefix p.
func PrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// slogAdapter routes Badger's logger to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, f string, args ...any) {
	if a.l == nil {
		return
	}
	a.l.Log(context.Background(), level, fmt.Sprintf(f, args...), "component", "badger")
}

func (a slogAdapter) Errorf(f string, args ...any)   { a.log(slog.LevelError, f, args...) }
func (a slogAdapter) Warningf(f string, args ...any) { a.log(slog.LevelWarn, f, args...) }
func (a slogAdapter) Infof(f string, args ...any)    { a.log(slog.LevelDebug, f, args...) }
func (a slogAdapter) Debugf(f string, args ...any)   { a.log(slog.LevelDebug, f, args...) }
