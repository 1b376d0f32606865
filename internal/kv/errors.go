package kv

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Errors. Damage, rollback and lack of space come as the typed errors below;
// match them with errors.Is (and errors.As for the details).
var (
	ErrNotFound   = errors.New("kv: key not found")
	ErrTxnTooBig  = errors.New("kv: transaction too big")
	ErrConflict   = errors.New("kv: transaction conflict")
	ErrBadKeySize = errors.New("kv: encryption key must be 16, 24 or 32 bytes")
	// ErrReservedKey: a key in the namespace kv keeps for itself
	// ("!fedstat!kv!") was given to Set or Delete.
	ErrReservedKey = errors.New("kv: key uses the reserved prefix !fedstat!kv!")
	// ErrInUse: another process has the store open.
	ErrInUse = errors.New("kv: store in use by another process")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("kv: store closed")

	// ErrDamaged: files of the store are missing, damaged or inconsistent
	// (no MANIFEST next to table files, a torn table, a missing watermark
	// file, a panic inside Badger while reading). It comes as a
	// *DamageError that names the directory and the file. A process must
	// not serve from such a store: stop, keep the directory as it is, and
	// restore it from a backup.
	ErrDamaged = errors.New("kv: store damaged")
	// ErrRolledBack: the store holds fewer watermarked updates than its
	// watermark file records: committed updates were lost, typically
	// because Badger dropped a damaged tail of its write-ahead log at
	// replay. A *DamageError for which errors.Is(err, ErrDamaged) also
	// holds.
	ErrRolledBack = errors.New("kv: store rolled back")
	// ErrNoSpace: the file system of the store has too little free space
	// for the operation. It comes as a *NoSpaceError; nothing was written.
	ErrNoSpace = errors.New("kv: no space left on device")
	// ErrWatermark: an UpdateWatermarked committed, but the watermark file
	// could not be advanced; further watermarked updates are refused until
	// it can be written again.
	ErrWatermark = errors.New("kv: watermark file not updated")
)

// RestoreAdvice is what DamageError tells the operator to do.
const RestoreAdvice = "do not start on this store: stop the process, keep the directory as it is for inspection, and restore the data directory from a backup " +
	"(a node's: `fedstat node restore --data-dir DIR BACKUP`, which keeps the higher of the backup's spent budget and the one this node proves)"

// DamageError describes damage found in a store. Kind is ErrDamaged or
// ErrRolledBack; errors.Is matches Kind and ErrDamaged.
type DamageError struct {
	// Dir is the store's directory.
	Dir string
	// File is the damaged or missing file, relative to Dir ("" when it
	// could not be told).
	File string
	// Problem says what is wrong, for the operator.
	Problem string
	// Kind is ErrDamaged or ErrRolledBack.
	Kind error
}

func (e *DamageError) Error() string {
	what := "store damaged"
	if e.Kind == ErrRolledBack {
		what = "store rolled back"
	}
	where := e.Dir
	if e.File != "" {
		where = filepath.Join(e.Dir, e.File)
	}
	return fmt.Sprintf("kv: %s: %s: %s; %s", what, where, e.Problem, RestoreAdvice)
}

// Is makes errors.Is(err, ErrDamaged) true for every DamageError and
// errors.Is(err, ErrRolledBack) true for rollbacks.
func (e *DamageError) Is(target error) bool {
	return target == ErrDamaged || (e.Kind != nil && target == e.Kind)
}

func damaged(dir, file, format string, args ...any) *DamageError {
	return &DamageError{Dir: dir, File: file, Problem: fmt.Sprintf(format, args...), Kind: ErrDamaged}
}

// NoSpaceError says which file system is too full for what.
type NoSpaceError struct {
	// Path is the store's directory (or the file being allocated).
	Path string
	// Op is what was refused: "open", "write", "close", "allocate".
	Op string
	// Free is the space available to the process on that file system, in
	// bytes; Need is what the operation requires, headroom included.
	Free, Need uint64
	// Err is the system error when an allocation failed, else nil.
	Err error
}

func (e *NoSpaceError) Error() string {
	s := fmt.Sprintf("kv: no space left on device: %s: %s needs %s free (headroom for Badger's flushes and compactions included), %s available",
		e.Path, e.Op, bytesText(e.Need), bytesText(e.Free))
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s + "; nothing was written: free some space on that file system"
}

// Is makes errors.Is(err, ErrNoSpace) true.
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }

func (e *NoSpaceError) Unwrap() error { return e.Err }

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
