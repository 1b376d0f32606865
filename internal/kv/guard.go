package kv

import (
	"errors"
	"fmt"
)

// Panics inside Badger.
//
// Badger's table and log readers index into memory-mapped files with
// lengths read from those files; a torn or damaged file makes them panic
// (slice bounds out of range) rather than return an error. Reads run in
// the caller's goroutine, so kv catches such a panic at its own boundary
// (every exported method that calls into Badger), turns it into a
// *DamageError, names the damaged table file when a check of the tables
// finds it, and refuses all further use of the DB. Panics raised by the
// caller's own functions (the fn of View, Update, Iterate) pass through
// unchanged.

// userPanic carries a panic of the caller's code through kv's recovery.
type userPanic struct{ v any }

// callUser runs the caller's function, marking a panic from it as the
// caller's.
func callUser(fn func() error) (err error) {
	done := false
	defer func() {
		if !done {
			if r := recover(); r != nil {
				if _, ok := r.(userPanic); ok {
					panic(r)
				}
				panic(userPanic{r})
			}
		}
	}()
	err = fn()
	done = true
	return err
}

// catch is deferred by every method that calls into Badger: it turns a
// panic from Badger into a *DamageError in *errp and re-raises the
// caller's own panics.
func (d *DB) catch(op string, errp *error) {
	r := recover()
	if r == nil {
		return
	}
	if up, ok := r.(userPanic); ok {
		panic(up.v)
	}
	*errp = d.fail(op, r)
}

// fail records damage found by a panic during op and returns it.
func (d *DB) fail(op string, r any) error {
	if e := d.damage.Load(); e != nil {
		return e
	}
	derr := damaged(d.dir, "", "Badger panicked during a %s: %s", op, firstLine(fmt.Sprint(r)))
	if d.dir != "" {
		// Find the file: check every table the MANIFEST lists. Tables that
		// a compaction removes meanwhile are skipped.
		if m, err := readManifest(d.dir, slogAdapter{l: d.log}); err == nil {
			var de *DamageError
			if err := verifyTables(d.dir, d.o, m.tables, d.log); errors.As(err, &de) && de.File != "" {
				derr.File = de.File
				derr.Problem = de.Problem + " (found after Badger panicked during a " + op + ")"
			}
		}
	}
	if !d.damage.CompareAndSwap(nil, derr) {
		return d.damage.Load()
	}
	d.log.Error("kv: store damaged; refusing further use", "dir", d.dir, "file", derr.File, "problem", derr.Problem)
	return derr
}
