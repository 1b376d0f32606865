package kv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// smallFS mounts a tmpfs of size bytes on a new directory and unmounts it
// when the test ends. It skips the test with the reason when mounting is
// impossible (not root, no CAP_SYS_ADMIN, a container without mount
// rights); but under CI=true as root, where CI runs (a machine like the
// one this was written on, where tmpfs mounts work), a failed mount fails
// the test unless FEDSTAT_TEST_NO_MOUNT=1 says the runner cannot mount.
func smallFS(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size))
	if err != nil {
		reason := fmt.Sprintf("cannot mount a %d-byte tmpfs on %s (needs root or CAP_SYS_ADMIN): %v", size, dir, err)
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 && os.Getenv("FEDSTAT_TEST_NO_MOUNT") != "1" {
			t.Fatalf("%s; CI runs as root and is expected to mount (set FEDSTAT_TEST_NO_MOUNT=1 on a runner that cannot)", reason)
		}
		t.Skip(reason)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func free(t *testing.T, dir string) uint64 {
	t.Helper()
	n, _, err := freeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fillUp leaves exactly leave bytes free on dir's file system, with a
// filler file that removeFill deletes.
func fillUp(t *testing.T, dir string, leave uint64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "filler"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	have := free(t, dir)
	if have < leave {
		t.Fatalf("only %d bytes free, want to leave %d", have, leave)
	}
	if err := allocate(f, st.Size(), int64(have-leave), false); err != nil {
		t.Fatal(err)
	}
	if got := free(t, dir); got != leave {
		t.Fatalf("left %d bytes free, want %d", got, leave)
	}
}

func removeFill(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
}

func wantNoSpace(t *testing.T, what string, err error) {
	t.Helper()
	var ns *NoSpaceError
	if !errors.Is(err, ErrNoSpace) || !errors.As(err, &ns) {
		t.Fatalf("%s on a full disk: %v, want a *NoSpaceError", what, err)
	}
	if !strings.Contains(err.Error(), ns.Path) || ns.Need <= ns.Free {
		t.Fatalf("%s: unclear error %v (%+v)", what, err, ns)
	}
}

// diskFullScenario is the child part of TestDiskFull: it runs in its own
// process because on a full disk Badger used to die with SIGBUS, which no
// test can survive.
func diskFullScenario(t *testing.T, mnt string) {
	o := Options{Dir: filepath.Join(mnt, "kv"), MemTableSize: 1 << 20, MinFreeBytes: 2 << 20}
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("x", 4000))
	put := func(db *DB, i int) error {
		_, err := db.UpdateWatermarked(func(tx *Txn) error { return tx.Set([]byte(fmt.Sprintf("k%06d", i)), value) })
		return err
	}
	for i := range 50 {
		if err := put(db, i); err != nil {
			t.Fatal(err)
		}
	}

	// 1. The disk fills up (another process's files): writes (a ledger
	// update, an import batch) get ErrNoSpace, no crash.
	fillUp(t, mnt, 0)
	wantNoSpace(t, "watermarked update", put(db, 50))
	wantNoSpace(t, "update", db.Update(func(tx *Txn) error { return tx.Set([]byte("other"), value) }))
	b := db.NewBatch()
	var berr error
	for i := 0; i < 2000 && berr == nil; i++ {
		berr = b.Set([]byte(fmt.Sprintf("b%06d", i)), value)
	}
	if berr == nil {
		berr = b.Flush()
	} else {
		b.Cancel()
	}
	wantNoSpace(t, "batch", berr)
	// Reads still work.
	if v, err := db.Get([]byte("k000049")); err != nil || len(v) != len(value) {
		t.Fatalf("read on a full disk: %v", err)
	}
	// Close flushes the memtable into the room of the write-ahead log file
	// kv kept ready.
	if err := db.Close(); err != nil {
		t.Fatalf("Close on a full disk: %v", err)
	}

	// 2. Opening on a full disk (node status, a restart): ErrNoSpace.
	fillUp(t, mnt, 0)
	_, err = Open(o)
	wantNoSpace(t, "Open", err)
	t.Log(err)

	// 3. Space freed: everything acknowledged is there.
	removeFill(t, mnt)
	db, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, db, 50, value)

	// 4. Little room left (headroom plus a bit): writes go on until the
	// room is used, then ErrNoSpace, never a crash; every acknowledged
	// write survives. The memtable rotates (1 MiB) and is flushed in the
	// meantime.
	fillUp(t, mnt, o.MinFreeBytes+1<<20)
	n := 50
	for ; ; n++ {
		if err := put(db, n); err != nil {
			wantNoSpace(t, "update under pressure", err)
			break
		}
		if n > 5000 {
			t.Fatal("wrote 20 MB into an 8 MB file system")
		}
	}
	t.Logf("acknowledged %d writes of %d bytes before ErrNoSpace", n, len(value))
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	removeFill(t, mnt)
	db, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkKeys(t, db, n, value)
	if w, err := db.Watermark(); err != nil || w != uint64(n) {
		t.Fatalf("watermark %d, %v; want %d", w, err, n)
	}
}

func checkKeys(t *testing.T, db *DB, n int, value []byte) {
	t.Helper()
	got := 0
	err := db.View(func(tx *Txn) error {
		return tx.Iterate([]byte("k"), func(k, v []byte) error {
			if want := fmt.Sprintf("k%06d", got); string(k) != want || string(v) != string(value) {
				return fmt.Errorf("key %q, want %q", k, want)
			}
			got++
			return nil
		})
	})
	if err != nil || got != n {
		t.Fatalf("%d of %d keys intact: %v", got, n, err)
	}
}

// A full disk crashed the node with SIGBUS inside Badger (a write into a
// sparse memory-mapped log file). Now it is ErrNoSpace, and what was
// stored is intact once space is freed.
func TestDiskFull(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		diskFullScenario(t, dir)
		return
	}
	mnt := smallFS(t, 16<<20)
	out, err := runChild(t, "TestDiskFull", mnt)
	if err != nil {
		if strings.Contains(out, "SIGBUS") || strings.Contains(out, "unexpected fault address") {
			t.Fatalf("the store crashed on a full disk:\n%s", tail(out, 40))
		}
		t.Fatalf("child: %v\n%s", err, tail(out, 60))
	}
	t.Log(tail(out, 12))
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// The space accounting follows Badger's memtable rotations under
// concurrent writers and large batches.
func TestRotationsTracked(t *testing.T) {
	o := Options{Dir: t.TempDir(), MemTableSize: 1 << 20, MinFreeBytes: 1}
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("y", 3000))
	done := make(chan error)
	for w := range 4 {
		go func() {
			for i := range 150 {
				if err := db.Update(func(tx *Txn) error {
					return tx.Set([]byte(fmt.Sprintf("k%d-%04d", w, i)), value)
				}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	b := db.NewBatch()
	for i := range 8000 {
		if err := b.Set([]byte(fmt.Sprintf("b%05d", i)), value); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	// The file Badger appends to is the one kv allocates, and the next one
	// is ready and still empty.
	db.space.mu.Lock()
	db.space.observe()
	active, next := db.space.mem.fid, db.space.nextFid
	db.space.mu.Unlock()
	mems, _ := fids(o.Dir, ".mem")
	if len(mems) < 2 || mems[len(mems)-1] != next || mems[len(mems)-2] != active {
		t.Fatalf("memtable files %v, kv thinks active %d next %d", mems, active, next)
	}
	if st, _ := os.Stat(filepath.Join(o.Dir, memName(next))); st.Size() != 0 {
		t.Fatalf("next memtable file in use")
	}
	if a := allocated(filepath.Join(o.Dir, memName(active))); a < 1<<20 {
		t.Fatalf("active memtable file has only %d bytes allocated", a)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *Txn) error {
		return tx.IterateKeys(nil, func(k []byte) error {
			if k[0] != '!' {
				n++
			}
			return nil
		})
	})
	if n != 4*150+8000 {
		t.Fatalf("%d keys after reopen", n)
	}
}
