package kv

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"
)

// The watermark.
//
// Badger replays its write-ahead log (the memtable files) at open and stops
// at the first entry whose checksum fails, silently: a log whose tail was
// damaged after a crash (the second half of 00001.mem zeroed, say) opens as
// a store that lost its last committed updates. For most data that is a
// nuisance; for a privacy-budget ledger it is a budget handed out twice.
//
// UpdateWatermarked counts, inside the store, the watermarked updates
// committed so far (a key kv reserves for itself), and after each commit
// writes that count to WATERMARK, a small file next to Badger's, synced
// before UpdateWatermarked returns. Open compares the two: a store whose
// count is below the file's lost committed updates and is refused with
// ErrRolledBack. A crash between the commit and the file write leaves the
// store one ahead, which Open accepts (and writes the file forward).
//
// Contract:
//
//   - Once UpdateWatermarked(fn) has returned (n, nil), the update fn made
//     is durable and any later Open of the directory either sees it or
//     fails with ErrRolledBack (or ErrDamaged); it never opens without it.
//   - Plain Update gives the same durability (writes are synced) but no
//     such detection. Use UpdateWatermarked for writes whose silent loss
//     matters (budget debits, release records), Update for the rest.
//   - The watermark is per directory. Copying a directory back from a backup
//     copies its WATERMARK too: restoring an older backup is not a
//     rollback in this sense (the operator chose it).
//   - Deleting WATERMARK from a store whose count is above zero makes Open
//     fail with ErrDamaged.
//
// The file holds two 32-byte slots; update n goes to slot n mod 2, so a
// torn write leaves the other slot (n-1) intact. Each slot is "FSWM",
// version 1, the count (8 bytes) and a CRC-32C of those 16 bytes.

const watermarkFile = "WATERMARK"

var watermarkKey = []byte("!fedstat!kv!watermark")

var reservedPrefix = []byte("!fedstat!kv!")

const slotSize = 32

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeSlot(n uint64) []byte {
	b := make([]byte, slotSize)
	copy(b, "FSWM")
	binary.BigEndian.PutUint32(b[4:], 1)
	binary.BigEndian.PutUint64(b[8:], n)
	binary.BigEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	return b
}

func decodeSlot(b []byte) (uint64, bool) {
	if len(b) < slotSize || string(b[:4]) != "FSWM" || binary.BigEndian.Uint32(b[4:]) != 1 ||
		binary.BigEndian.Uint32(b[16:]) != crc32.Checksum(b[:16], castagnoli) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[8:]), true
}

// readWatermark returns the count WATERMARK records and whether the file
// exists. An unreadable file is a *DamageError.
func readWatermark(dir string) (uint64, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, watermarkFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, damaged(dir, watermarkFile, "cannot read the watermark file: %v", err)
	}
	a, okA := decodeSlot(b)
	var c uint64
	okB := false
	if len(b) >= 2*slotSize {
		c, okB = decodeSlot(b[slotSize:])
	}
	switch {
	case okA && okB:
		return max(a, c), true, nil
	case okA:
		return a, true, nil
	case okB:
		return c, true, nil
	}
	return 0, true, damaged(dir, watermarkFile, "the watermark file holds no valid record (%d bytes)", len(b))
}

// sidecar is the open WATERMARK file.
type sidecar struct {
	f    *os.File
	path string
}

// createWatermark writes a new WATERMARK holding n (temporary file, sync,
// rename, sync of the directory).
func createWatermark(dir string, n uint64) error {
	tmp, err := os.CreateTemp(dir, ".watermark-*")
	if err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	defer os.Remove(tmp.Name())
	b := append(encodeSlot(n), encodeSlot(n)...)
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("kv: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("kv: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, watermarkFile)); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("kv: sync %s: %w", dir, err)
	}
	return nil
}

func openSidecar(dir string) (*sidecar, error) {
	p := filepath.Join(dir, watermarkFile)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	return &sidecar{f: f, path: p}, nil
}

// write records n in its slot and syncs. The file's blocks exist already,
// so this needs no free space.
func (s *sidecar) write(n uint64) error {
	if _, err := s.f.WriteAt(encodeSlot(n), int64(n%2)*slotSize); err != nil {
		return err
	}
	return datasync(s.f) // the size does not change: data is enough
}

func (s *sidecar) close() error {
	if s == nil {
		return nil
	}
	return s.f.Close()
}

// The rollback note.
//
// Badger truncates a write-ahead log to its last good entry while it
// replays it, and the Close after a refused open flushes what was replayed
// and removes the log file: the next open no longer sees which file was
// damaged. So the open that finds the rollback writes what it found to
// ROLLED-BACK next to the store, and later opens and Check report that
// (the store stays refused by its watermark either way). The note goes
// with the directory: a restored store has none.

const rollbackNote = "ROLLED-BACK"

type noteRecord struct {
	Time    time.Time `json:"time"`
	File    string    `json:"file"`
	Problem string    `json:"problem"`
}

func writeRollbackNote(dir string, e *DamageError) {
	b, err := json.Marshal(noteRecord{Time: time.Now().UTC(), File: e.File, Problem: e.Problem})
	if err != nil {
		return
	}
	p := filepath.Join(dir, rollbackNote)
	if os.WriteFile(p, b, 0o600) == nil {
		if f, err := os.Open(p); err == nil {
			f.Sync()
			f.Close()
		}
	}
}

// readRollbackNote returns the rollback an earlier open found, or nil.
func readRollbackNote(dir string) *DamageError {
	b, err := os.ReadFile(filepath.Join(dir, rollbackNote))
	if err != nil {
		return nil
	}
	var n noteRecord
	if json.Unmarshal(b, &n) != nil {
		return nil
	}
	return &DamageError{Dir: dir, File: n.File, Kind: ErrRolledBack,
		Problem: fmt.Sprintf("%s (found when the store was opened at %s; Badger has since cut the damaged log, %s records it)", n.Problem, n.Time.Format(time.RFC3339), rollbackNote)}
}
