package kv

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// childEnv marks a run of the test binary as a child process of a test:
// its value names the directory the child works in.
const childEnv = "FEDSTAT_KV_TEST_CHILD_DIR"

// runChild runs the test named test in a child process (the test binary
// itself) with dir in childEnv, and returns its combined output. The child
// part of the test runs when childEnv is set.
func runChild(t *testing.T, test, dir string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeCounter is a ledger-like writer: n watermarked updates that each set
// "ctr" to its number, then the process ends without Close (as after
// SIGKILL: Badger's write-ahead log holds the updates, no table does).
func writeCounterAndDie(dir string, n int) {
	db, err := Open(Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := db.UpdateWatermarked(func(tx *Txn) error {
			return tx.Set([]byte("ctr"), []byte(strconv.Itoa(i)))
		}); err != nil {
			panic(err)
		}
	}
	os.Exit(0)
}

// usedEnd returns the offset after the last non-zero byte of a file.
func usedEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return int64(end)
}

// A memtable file (Badger's write-ahead log) whose second half was zeroed
// after a crash: Badger replays up to the damage and drops the rest
// without a word (the counter came back as 101 of 200). With the
// watermark, Open refuses with ErrRolledBack naming the file.
func TestDamagedWriteAheadLogDetected(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		writeCounterAndDie(dir, 200)
	}
	dir := t.TempDir()
	if out, err := runChild(t, "TestDamagedWriteAheadLogDetected", dir); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var mems []string // the write-ahead log; kv keeps the next one ready, empty
	all, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	for _, m := range all {
		if st, err := os.Stat(m); err == nil && st.Size() > 0 {
			mems = append(mems, m)
		}
	}
	if len(mems) != 1 {
		t.Fatalf("memtable files %v", mems)
	}
	end := usedEnd(t, mems[0])
	zero(t, mems[0], end/2, end-end/2)

	_, err := Open(Options{Dir: dir})
	var de *DamageError
	if !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrDamaged) || !errors.As(err, &de) {
		t.Fatalf("Open after a damaged write-ahead log: %v, want ErrRolledBack", err)
	}
	if de.File != filepath.Base(mems[0]) {
		t.Fatalf("names %q, want %s: %v", de.File, filepath.Base(mems[0]), err)
	}
	t.Log(err)
	// It stays refused, and later opens and Check still name the damaged
	// log, which Badger cut at the first open (the rollback note).
	name := filepath.Base(mems[0])
	if _, err := os.Stat(mems[0]); err == nil {
		t.Logf("%s still exists after the refused open", name)
	}
	de = nil
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrRolledBack) || !errors.As(err, &de) || de.File != name {
		t.Fatalf("second Open: %v; want ErrRolledBack naming %s", err, name)
	}
	if err := Check(Options{Dir: dir}); !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), name) {
		t.Fatalf("Check after the refused open: %v; want ErrRolledBack naming %s", err, name)
	}
}

// Without damage, every acknowledged watermarked update survives the crash.
func TestWatermarkSurvivesCrash(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		writeCounterAndDie(dir, 50)
	}
	dir := t.TempDir()
	if out, err := runChild(t, "TestWatermarkSurvivesCrash", dir); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Get([]byte("ctr")); err != nil || string(v) != "50" {
		t.Fatalf("ctr = %s, %v", v, err)
	}
	if n, err := db.Watermark(); err != nil || n != 50 {
		t.Fatalf("Watermark = %d, %v", n, err)
	}
}

func TestWatermarkFile(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		n, err := db.UpdateWatermarked(func(tx *Txn) error { return tx.Set([]byte("a"), []byte{byte(i)}) })
		if err != nil || n != uint64(i) {
			t.Fatalf("UpdateWatermarked = %d, %v", n, err)
		}
	}
	if err := db.Update(func(tx *Txn) error { return tx.Set(watermarkKey, []byte("x")) }); !errors.Is(err, ErrReservedKey) {
		t.Fatalf("setting the reserved key: %v", err)
	}
	// Iterations over everything do not show kv's own key.
	err = db.View(func(tx *Txn) error {
		it := tx.NewIterator(nil, false)
		defer it.Close()
		for ; it.Valid(); it.Next() {
			if string(it.Key()) != "a" {
				t.Errorf("iterator shows %q", it.Key())
			}
		}
		return tx.IterateKeys(nil, func(k []byte) error {
			if string(k) != "a" {
				t.Errorf("IterateKeys shows %q", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, watermarkFile)
	if n, ok, err := readWatermark(dir); err != nil || !ok || n != 3 {
		t.Fatalf("readWatermark = %d %v %v", n, ok, err)
	}

	// A torn write of one slot leaves the other (one behind): accepted, and
	// the file is moved forward.
	b, _ := os.ReadFile(path)
	torn := bytes.Clone(b)
	copy(torn[slotSize:], make([]byte, 8)) // slot of 3 (odd) damaged
	os.WriteFile(path, torn, 0o600)
	db, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open with one torn slot: %v", err)
	}
	db.Close()
	if n, _, _ := readWatermark(dir); n != 3 {
		t.Fatalf("watermark not moved forward: %d", n)
	}

	// Both slots bad, or the file gone: damaged.
	os.WriteFile(path, make([]byte, 64), 0o600)
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with a garbled watermark: %v", err)
	}
	os.Remove(path)
	_, err = Open(Options{Dir: dir})
	wantDamage(t, err, watermarkFile)

	// A file ahead of the store (an older store copied under a newer
	// watermark): rolled back, no write-ahead log to name.
	if err := createWatermark(dir, 9); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Open with the store behind its watermark: %v", err)
	}
	if err := createWatermark(dir, 3); err != nil {
		t.Fatal(err)
	}
	db, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _ := db.Get([]byte("a")); !bytes.Equal(v, []byte{3}) {
		t.Fatalf("a = %v", v)
	}
}

func TestWatermarkInMemory(t *testing.T) {
	db, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := db.UpdateWatermarked(func(tx *Txn) error { return tx.Set([]byte("a"), []byte("b")) })
	if err != nil || n != 1 {
		t.Fatalf("UpdateWatermarked = %d, %v", n, err)
	}
}
