package kv

import (
	"fmt"
	"testing"
	"time"
)

// The space accounting on the write path: what reserve adds to every
// Update (a stat of the next log file and a statfs).
func BenchmarkSpaceReserve(b *testing.B) {
	db, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for b.Loop() {
		if err := db.space.reserve(200, 0); err != nil {
			b.Fatal(err)
		}
		db.space.done(200, 0)
	}
}

// A small synced Update, plain and watermarked.
func BenchmarkUpdate(b *testing.B) {
	for _, wm := range []bool{false, true} {
		b.Run(fmt.Sprintf("watermarked=%v", wm), func(b *testing.B) {
			db, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			i := 0
			for b.Loop() {
				i++
				fn := func(tx *Txn) error { return tx.Set([]byte(fmt.Sprintf("l/%d", i%100)), []byte("0.125")) }
				if wm {
					_, err = db.UpdateWatermarked(fn)
				} else {
					err = db.Update(fn)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Open of a store with n records (the table check reads every block).
func BenchmarkOpenVerify(b *testing.B) {
	dir := b.TempDir()
	db, err := Open(Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	v := make([]byte, 200)
	bt := db.NewBatch()
	for i := range 500_000 {
		copy(v, fmt.Sprintf("%d-%x", i, i*7919))
		if err := bt.Set([]byte(fmt.Sprintf("d/r/%09d", i)), append([]byte(nil), v...)); err != nil {
			b.Fatal(err)
		}
	}
	if err := bt.Flush(); err != nil {
		b.Fatal(err)
	}
	db.Close()
	m, _ := readManifest(dir, slogAdapter{})
	var size int64
	for id := range m.tables {
		size += fileSize(fmt.Sprintf("%s/%06d.sst", dir, id))
	}
	b.Logf("%d tables, %d MB", len(m.tables), size>>20)
	for b.Loop() {
		t0 := time.Now()
		if err := verifyTables(dir, Options{}.withDefaults(), m.tables, Options{}.withDefaults().Logger); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		db, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		n := 0
		db.View(func(tx *Txn) error { return tx.IterateKeys(nil, func([]byte) error { n++; return nil }) })
		t3 := time.Now()
		db.Close()
		b.Logf("verify %v, whole Open %v, scan of %d keys %v", t1.Sub(t0), t2.Sub(t1), n, t3.Sub(t2))
	}
}

// The extra work of a watermarked update: one 32-byte write and fsync of
// the WATERMARK file.
func BenchmarkWatermarkFileWrite(b *testing.B) {
	dir := b.TempDir()
	if err := createWatermark(dir, 0); err != nil {
		b.Fatal(err)
	}
	s, err := openSidecar(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	n := uint64(0)
	for b.Loop() {
		n++
		if err := s.write(n); err != nil {
			b.Fatal(err)
		}
	}
}
