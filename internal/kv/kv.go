// Package kv is fedstat's embedded key-value store: a thin wrapper over Badger
// v4, and the only package that imports Badger.
//
// Transactions are serialisable. A single Update is atomic and durable when
// it returns (writes are synced). Badger limits the size of one transaction;
// callers that write more than fits (large imports) use a Batch for the bulk
// and make it visible with one small Update (see node's store for the
// pattern).
package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Errors.
var (
	ErrNotFound   = errors.New("kv: key not found")
	ErrTxnTooBig  = errors.New("kv: transaction too big")
	ErrConflict   = errors.New("kv: transaction conflict")
	ErrBadKeySize = errors.New("kv: encryption key must be 16, 24 or 32 bytes")
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
	// Logger receives Badger's messages at debug/info/warn/error.
	// Defaults to discarding them.
	Logger *slog.Logger
}

// DB is an open store. It is safe for concurrent use.
type DB struct {
	db *badger.DB
}

// Open opens (creating if needed) the store described by o.
func Open(o Options) (*DB, error) {
	if !o.InMemory && o.Dir == "" {
		return nil, errors.New("kv: Options.Dir is required")
	}
	bo := badger.DefaultOptions(o.Dir).
		WithInMemory(o.InMemory).
		WithSyncWrites(true).
		WithCompression(options.ZSTD).
		WithNumVersionsToKeep(1).
		WithLogger(slogAdapter{l: o.Logger})
	if o.InMemory {
		bo = bo.WithDir("").WithValueDir("")
	}
	if len(o.EncryptionKey) > 0 {
		switch len(o.EncryptionKey) {
		case 16, 24, 32:
		default:
			return nil, ErrBadKeySize
		}
		// Badger needs a block/index cache when encryption is on.
		bo = bo.WithEncryptionKey(o.EncryptionKey).WithIndexCacheSize(64 << 20)
	}
	if !o.InMemory {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("kv: %w", err)
		}
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", o.Dir, err)
	}
	return &DB{db: db}, nil
}

// Close flushes and closes the store.
func (d *DB) Close() error { return d.db.Close() }

// Txn is a transaction. It must not be used after the function that received
// it returns.
type Txn struct {
	t *badger.Txn
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %v", ErrTxnTooBig, err)
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

// Get returns a copy of the value of key, or ErrNotFound.
func (t *Txn) Get(key []byte) ([]byte, error) {
	it, err := t.t.Get(key)
	if err != nil {
		return nil, mapErr(err)
	}
	v, err := it.ValueCopy(nil)
	return v, mapErr(err)
}

// Set writes key=value.
func (t *Txn) Set(key, value []byte) error { return mapErr(t.t.Set(key, value)) }

// Delete removes key.
func (t *Txn) Delete(key []byte) error { return mapErr(t.t.Delete(key)) }

// Iterate calls fn for every key with the given prefix, in key order. The key
// and value slices are valid only during the call. Returning an error stops
// the iteration and returns that error.
func (t *Txn) Iterate(prefix []byte, fn func(key, value []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := t.t.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		err := item.Value(func(v []byte) error { return fn(item.Key(), v) })
		if err != nil {
			return err
		}
	}
	return nil
}

// IterateKeys calls fn for every key with the given prefix without reading
// values.
func (t *Txn) IterateKeys(prefix []byte, fn func(key []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := t.t.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if err := fn(it.Item().Key()); err != nil {
			return err
		}
	}
	return nil
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(*Txn) error) error {
	return d.db.View(func(t *badger.Txn) error { return fn(&Txn{t: t}) })
}

// Update runs fn in a read-write transaction and commits it durably if fn
// returns nil. A conflict with a concurrent transaction is retried up to 10
// times, so fn must be safe to run again.
func (d *DB) Update(fn func(*Txn) error) error {
	var err error
	for range 10 {
		err = mapErr(d.db.Update(func(t *badger.Txn) error { return fn(&Txn{t: t}) }))
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return err
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
// subset written. Use it only for keys that nothing reads until a later
// Update makes them reachable.
type Batch struct {
	wb *badger.WriteBatch
}

// NewBatch starts a batch.
func (d *DB) NewBatch() *Batch { return &Batch{wb: d.db.NewWriteBatch()} }

// Set queues key=value. The slices must not be modified afterwards.
func (b *Batch) Set(key, value []byte) error { return mapErr(b.wb.Set(key, value)) }

// Delete queues the removal of key.
func (b *Batch) Delete(key []byte) error { return mapErr(b.wb.Delete(key)) }

// Flush writes everything queued and waits for it to be durable.
func (b *Batch) Flush() error { return mapErr(b.wb.Flush()) }

// Cancel drops the batch.
func (b *Batch) Cancel() { b.wb.Cancel() }

// DropPrefix removes every key with one of the prefixes.
func (d *DB) DropPrefix(prefixes ...[]byte) error {
	return mapErr(d.db.DropPrefix(prefixes...))
}

// Sync makes all writes so far durable.
func (d *DB) Sync() error { return d.db.Sync() }

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
