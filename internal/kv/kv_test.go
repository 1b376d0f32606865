package kv

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTripAndPrefix(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"memory", Options{InMemory: true}},
		{"disk-encrypted", Options{Dir: t.TempDir(), EncryptionKey: bytes.Repeat([]byte{7}, 32)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *Txn) error {
				for _, k := range []string{"a/1", "a/2", "b/1"} {
					if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Get([]byte("zz")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing key: got %v, want ErrNotFound", err)
			}
			var keys []string
			if err := db.View(func(tx *Txn) error {
				return tx.Iterate([]byte("a/"), func(k, v []byte) error {
					if string(v) != "v"+string(k) {
						t.Errorf("value of %s = %s", k, v)
					}
					keys = append(keys, string(k))
					return nil
				})
			}); err != nil {
				t.Fatal(err)
			}
			if len(keys) != 2 || keys[0] != "a/1" || keys[1] != "a/2" {
				t.Fatalf("prefix a/: %v", keys)
			}
		})
	}
}

func TestEncryptionKeyRequiredToReopen(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{1}, 16)
	db, err := Open(Options{Dir: dir, EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Txn) error { return tx.Set([]byte("k"), []byte("secret")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(Options{Dir: dir, EncryptionKey: bytes.Repeat([]byte{2}, 16)}); err == nil {
		db.Close()
		t.Fatal("opened an encrypted store with the wrong key")
	}
	if _, err := Open(Options{Dir: dir, EncryptionKey: []byte("short")}); !errors.Is(err, ErrBadKeySize) {
		t.Fatalf("short key: %v", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	if got := PrefixEnd([]byte{1, 0xff}); !bytes.Equal(got, []byte{2}) {
		t.Fatalf("PrefixEnd = %v", got)
	}
	if got := PrefixEnd([]byte{0xff}); got != nil {
		t.Fatalf("PrefixEnd(ff) = %v", got)
	}
}

func TestIteratorSeek(t *testing.T) {
	db, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *Txn) error {
		for _, k := range []string{"p/a", "p/c", "p/e", "q/a"} {
			if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *Txn) error {
		it := tx.NewIterator([]byte("p/"), true)
		defer it.Close()
		if !it.Valid() || string(it.Key()) != "p/a" {
			t.Fatalf("first key %q", it.Key())
		}
		it.Seek([]byte("p/b"))
		if !it.Valid() || string(it.Key()) != "p/c" {
			t.Fatalf("seek p/b: %q", it.Key())
		}
		if err := it.Value(func(v []byte) error {
			if string(v) != "vp/c" {
				t.Errorf("value %q", v)
			}
			return nil
		}); err != nil {
			return err
		}
		it.Seek([]byte("p/f"))
		if it.Valid() {
			t.Fatalf("seek past prefix still valid at %q", it.Key())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
