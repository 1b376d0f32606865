package kv

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// A backup of a store whose keys were overwritten and deleted loads into an
// empty store as exactly its live keys, newest values, without kv's own
// watermark; a second Load is refused.
func TestBackupLoad(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			var key []byte
			if enc {
				key = bytes.Repeat([]byte{7}, 32)
			}
			src, err := Open(Options{Dir: t.TempDir(), EncryptionKey: key})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			want := map[string]string{}
			for i := range 300 {
				k, v := fmt.Sprintf("k/%03d", i), fmt.Sprintf("v%d", i)
				if err := src.Update(func(tx *Txn) error { return tx.Set([]byte(k), []byte(v)) }); err != nil {
					t.Fatal(err)
				}
				want[k] = v
			}
			for i := 0; i < 300; i += 3 { // overwritten
				k := fmt.Sprintf("k/%03d", i)
				if _, err := src.UpdateWatermarked(func(tx *Txn) error { return tx.Set([]byte(k), []byte("new")) }); err != nil {
					t.Fatal(err)
				}
				want[k] = "new"
			}
			for i := 1; i < 300; i += 7 { // deleted
				k := fmt.Sprintf("k/%03d", i)
				if err := src.Update(func(tx *Txn) error { return tx.Delete([]byte(k)) }); err != nil {
					t.Fatal(err)
				}
				delete(want, k)
			}
			var buf bytes.Buffer
			n, err := src.Backup(&buf)
			if err != nil || n != len(want) {
				t.Fatalf("Backup: %d keys, %v; want %d", n, err, len(want))
			}

			dst, err := Open(Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			n, err = dst.Load(bytes.NewReader(buf.Bytes()))
			if err != nil || n != len(want) {
				t.Fatalf("Load: %d keys, %v; want %d", n, err, len(want))
			}
			got := map[string]string{}
			if err := dst.View(func(tx *Txn) error {
				return tx.Iterate(nil, func(k, v []byte) error { got[string(k)] = string(v); return nil })
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("loaded %d keys, want %d", len(got), len(want))
			}
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q", k, got[k], v)
				}
			}
			if w, err := dst.Watermark(); err != nil || w != 0 {
				t.Errorf("watermark of the loaded store %d, %v; want 0 (a new store)", w, err)
			}
			if _, err := dst.Load(bytes.NewReader(buf.Bytes())); !errors.Is(err, ErrNotEmpty) {
				t.Errorf("second Load: %v, want ErrNotEmpty", err)
			}
			if err := dst.Health(); err != nil {
				t.Errorf("Health: %v", err)
			}
		})
	}
}

func TestLoadRejectsGarbage(t *testing.T) {
	db, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, in := range [][]byte{{1, 2, 3}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, append([]byte{5, 0, 0, 0, 0, 0, 0, 0}, "junk!"...)} {
		if _, err := db.Load(bytes.NewReader(in)); err == nil {
			t.Errorf("Load(%q) accepted", in)
		}
	}
}
