package kv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fill writes n keys k00000.. with 100-byte values and closes the store, so
// that they end up in a table file.
func fill(t *testing.T, o Options, n int) {
	t.Helper()
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Txn) error {
		for i := range n {
			if err := tx.Set([]byte(fmt.Sprintf("k%05d", i)), []byte(strings.Repeat("v", 100))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// countKeys opens the store and counts the keys with prefix "k".
func countKeys(o Options) (int, error) {
	db, err := Open(o)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *Txn) error {
		return tx.IterateKeys([]byte("k"), func([]byte) error { n++; return nil })
	})
	return n, err
}

func tables(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no table files in %s (%v)", dir, err)
	}
	return m
}

// wantDamage checks that err is a *DamageError naming file, with the
// restore advice.
func wantDamage(t *testing.T, err error, file string) *DamageError {
	t.Helper()
	var de *DamageError
	if !errors.Is(err, ErrDamaged) || !errors.As(err, &de) {
		t.Fatalf("got %v, want a *DamageError (ErrDamaged)", err)
	}
	if de.File != file {
		t.Fatalf("damage names file %q, want %q: %v", de.File, file, err)
	}
	if !strings.Contains(err.Error(), RestoreAdvice) || !strings.Contains(err.Error(), file) {
		t.Fatalf("message lacks the file or the advice: %v", err)
	}
	return de
}

// A MANIFEST deleted by a bad restore or a careless clean-up: Badger
// opened such a directory as a new store and deleted every table file.
func TestMissingOrEmptyManifestRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string) error
	}{
		{"deleted", os.Remove},
		{"emptied", func(p string) error { return os.Truncate(p, 0) }},
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("not a manifest at all"), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, enc := range []bool{false, true} {
				o := Options{Dir: t.TempDir()}
				if enc {
					o.EncryptionKey = []byte("0123456789abcdef")
				}
				fill(t, o, 100)
				before := tables(t, o.Dir)
				if err := tc.damage(filepath.Join(o.Dir, "MANIFEST")); err != nil {
					t.Fatal(err)
				}
				n, err := countKeys(o)
				wantDamage(t, err, "MANIFEST")
				if n != 0 {
					t.Fatalf("read %d keys from a damaged store", n)
				}
				wantDamage(t, Check(o), "MANIFEST")
				if after := tables(t, o.Dir); len(after) != len(before) {
					t.Fatalf("table files %v became %v", before, after)
				}
			}
		})
	}
}

func TestMissingTableRefused(t *testing.T) {
	o := Options{Dir: t.TempDir()}
	fill(t, o, 100)
	sst := tables(t, o.Dir)[0]
	if err := os.Remove(sst); err != nil {
		t.Fatal(err)
	}
	_, err := countKeys(o)
	wantDamage(t, err, filepath.Base(sst))
}

// A torn table file made Badger panic in a goroutine of its own (a crash
// with a Go trace, nothing a caller could recover).
func TestTornTableRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
	}{
		{"truncated to half", func(t *testing.T, p string, size int64) {
			if err := os.Truncate(p, size/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"second half zeroed", func(t *testing.T, p string, size int64) { zero(t, p, size/2, size-size/2) }},
		{"bytes in the middle zeroed", func(t *testing.T, p string, size int64) { zero(t, p, size/4, 64) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, enc := range []bool{false, true} {
				o := Options{Dir: t.TempDir()}
				if enc {
					o.EncryptionKey = []byte("0123456789abcdef0123456789abcdef")
				}
				fill(t, o, 2000)
				sst := tables(t, o.Dir)[0]
				st, err := os.Stat(sst)
				if err != nil {
					t.Fatal(err)
				}
				tc.damage(t, sst, st.Size())
				_, err = countKeys(o)
				de := wantDamage(t, err, filepath.Base(sst))
				t.Logf("encrypted=%v: %s", enc, de.Problem)
				wantDamage(t, Check(o), filepath.Base(sst))
			}
		})
	}
}

func zero(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), off); err != nil {
		t.Fatal(err)
	}
}

// Check refuses to look at a store another process has open.
func TestCheckWhileOpen(t *testing.T) {
	o := Options{Dir: t.TempDir()}
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(o); !errors.Is(err, ErrInUse) {
		t.Fatalf("Check of an open store: %v", err)
	}
	if _, err := Open(o); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v", err)
	}
	db.Close()
	if err := Check(o); err != nil {
		t.Fatalf("Check of a closed store: %v", err)
	}
}

// Table files the MANIFEST never mentions are moved aside, not deleted.
func TestOrphanTableMovedAside(t *testing.T) {
	o := Options{Dir: t.TempDir()}
	fill(t, o, 100)
	src := tables(t, o.Dir)[0]
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "000777.sst"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(o); err != nil {
		t.Fatalf("Check: %v", err)
	}
	n, err := countKeys(o)
	if err != nil || n != 100 {
		t.Fatalf("count = %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(o.Dir, orphanDir, "000777.sst")); err != nil {
		t.Fatalf("orphan table not kept: %v", err)
	}
}

// A panic inside Badger while reading (a table damaged under a running
// store) is an error naming the table, and the store refuses further use.
func TestReadPanicBecomesDamage(t *testing.T) {
	o := Options{Dir: t.TempDir()}
	fill(t, o, 2000)
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sst := tables(t, o.Dir)[0]
	st, _ := os.Stat(sst)
	// Badger maps the file shared and reads a plain table's index in
	// place: damage to the index shows through at once.
	f, err := os.OpenFile(sst, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xff", int(st.Size()/4))), st.Size()*3/4-64); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n := 0
	err = db.View(func(tx *Txn) error {
		return tx.IterateKeys([]byte("k"), func([]byte) error { n++; return nil })
	})
	t.Logf("read %d keys, err %v", n, err)
	wantDamage(t, err, filepath.Base(sst))
	if err := db.Update(func(tx *Txn) error { return tx.Set([]byte("x"), []byte("y")) }); !errors.Is(err, ErrDamaged) {
		t.Fatalf("update after damage: %v", err)
	}
}

// A panic in the caller's own function is the caller's: it is not turned
// into damage.
func TestCallerPanicPassesThrough(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *Txn) error { return tx.Set([]byte("a"), []byte("b")) }); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() error{
		func() error { return db.View(func(*Txn) error { panic("mine") }) },
		func() error { return db.Update(func(*Txn) error { panic("mine") }) },
		func() error {
			return db.View(func(tx *Txn) error {
				return tx.Iterate(nil, func(k, v []byte) error { panic("mine") })
			})
		},
	} {
		func() {
			defer func() {
				if r := recover(); r != "mine" {
					t.Fatalf("recovered %v, want the caller's panic", r)
				}
			}()
			f()
		}()
	}
	if _, err := db.Get([]byte("a")); err != nil {
		t.Fatalf("store unusable after a caller's panic: %v", err)
	}
}
