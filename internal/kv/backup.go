package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"
)

// Backups.
//
// Backup writes Badger's backup stream (DB.Backup: a consistent snapshot
// of every live key at one read timestamp, as a sequence of
// little-endian-uint64-length-prefixed pb.KVList messages). Load reads such
// a stream into an empty store through kv's own batch writes, so the space
// accounting and the reserved-key rules apply as to any other write.
//
// The stream holds the values in the clear, also from a store encrypted at
// rest: whoever writes it to a file must protect it as the data itself.
// kv's own keys (the watermark) are not carried: a loaded store is a new
// store whose watermark starts at 0.

// ErrNotEmpty: Load was given a store that already holds keys.
var ErrNotEmpty = errors.New("kv: store not empty")

// Backup writes a consistent snapshot of the store to w and returns the
// number of keys written. It may run while the store is in use; writes
// committed after it starts are not in the snapshot.
func (d *DB) Backup(w io.Writer) (n int, err error) {
	if err := d.usable(); err != nil {
		return 0, err
	}
	defer d.catch("backup", &err)
	cw := &countingKVs{w: w}
	if _, err := d.db.Backup(cw, 0); err != nil {
		return 0, d.mapErr(err)
	}
	return cw.keys, cw.err
}

// countingKVs passes the stream through and counts the keys in it.
type countingKVs struct {
	w    io.Writer
	buf  []byte
	keys int
	err  error
}

func (c *countingKVs) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.buf = append(c.buf, p[:n]...)
	for len(c.buf) >= 8 {
		size := binary.LittleEndian.Uint64(c.buf)
		if uint64(len(c.buf)-8) < size {
			break
		}
		var list pb.KVList
		if perr := proto.Unmarshal(c.buf[8:8+size], &list); perr != nil && c.err == nil {
			c.err = fmt.Errorf("kv: backup stream: %w", perr)
		}
		c.keys += len(latest(list.Kv))
		c.buf = c.buf[8+size:]
	}
	return n, err
}

// deletedMeta reports whether a backup entry is a deletion marker (Badger's
// bitDelete, 1).
func deletedMeta(kv *pb.KV) bool { return len(kv.Meta) > 0 && kv.Meta[0]&1 != 0 }

// latest returns the live user entries of a backup message: Badger lists
// each key's versions newest first (older ones until a compaction drops
// them), so only a key's first entry counts, and not if it is a deletion.
func latest(kvs []*pb.KV) []*pb.KV {
	var out []*pb.KV
	var last []byte
	for i, kv := range kvs {
		if i > 0 && bytes.Equal(kv.Key, last) {
			continue
		}
		last = kv.Key
		if deletedMeta(kv) || kv.StreamDone || bytes.HasPrefix(kv.Key, reservedPrefix) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// maxBackupList bounds one message of a backup stream (Badger flushes at
// 100 MiB).
const maxBackupList = 1 << 30

// Load reads a stream written by Backup into the store, which must be
// empty (ErrNotEmpty otherwise), and returns the number of keys written.
// It is not atomic: a store whose Load failed must be thrown away.
func (d *DB) Load(r io.Reader) (int, error) {
	if err := d.usable(); err != nil {
		return 0, err
	}
	empty := true
	if err := d.View(func(t *Txn) error {
		return t.IterateKeys(nil, func([]byte) error { empty = false; return errStop })
	}); err != nil && !errors.Is(err, errStop) {
		return 0, err
	}
	if !empty {
		return 0, fmt.Errorf("%w: Load needs an empty store", ErrNotEmpty)
	}
	br := bufio.NewReaderSize(r, 1<<20)
	b := d.NewBatch()
	n := 0
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(br, hdr[:]); err == io.EOF {
			break
		} else if err != nil {
			b.Cancel()
			return n, fmt.Errorf("kv: backup stream: %w", err)
		}
		size := binary.LittleEndian.Uint64(hdr[:])
		if size > maxBackupList {
			b.Cancel()
			return n, fmt.Errorf("kv: backup stream: a message of %d bytes (not a backup, or damaged)", size)
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(br, msg); err != nil {
			b.Cancel()
			return n, fmt.Errorf("kv: backup stream: %w", err)
		}
		var list pb.KVList
		if err := proto.Unmarshal(msg, &list); err != nil {
			b.Cancel()
			return n, fmt.Errorf("kv: backup stream: %w", err)
		}
		for _, kv := range latest(list.Kv) {
			if err := b.Set(bytes.Clone(kv.Key), bytes.Clone(kv.Value)); err != nil {
				b.Cancel()
				return n, err
			}
			n++
		}
	}
	if err := b.Flush(); err != nil {
		return n, err
	}
	return n, d.Sync()
}

var errStop = errors.New("stop")

// Health returns why the store cannot take writes now, or nil: ErrClosed,
// the damage found while running (a *DamageError), or a *NoSpaceError when
// its file system has less than Options.MinFreeBytes available. It costs
// one statfs and reads nothing from Badger, so it can be polled.
func (d *DB) Health() error {
	if err := d.usable(); err != nil {
		return err
	}
	if d.space == nil {
		return nil
	}
	return d.space.check("write", 0)
}
