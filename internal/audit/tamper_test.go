package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// openLog writes n entries, then opens the log for appending as a daemon
// does and returns it with its path.
func openLog(t *testing.T, n int) (*Log, string) {
	t.Helper()
	path, _ := writeLog(t, n)
	l, err := OpenWith(path, Options{Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func appendOne(l *Log) error {
	return l.Append(context.Background(), Entry{Actor: "node-a", Action: "budget.debit", QueryID: "q-9", Details: map[string]any{"rho": 0.5}})
}

// lineStart returns the offset of line n (1-based).
func lineStart(data []byte, n int) int {
	off := 0
	for range n - 1 {
		off += bytes.IndexByte(data[off:], '\n') + 1
	}
	return off
}

// A running Log must notice a file changed underneath it. Before, it kept
// appending at its own offset into whatever the descriptor pointed at:
// after an editor or sed -i replaced the file, into the deleted old one
// (later entries vanished and `audit verify` still said ok).
func TestRunningLogRefusesChangedFile(t *testing.T) {
	type outcome struct {
		what     string // the TamperError's What
		open     error  // what a fresh Open says (nil: accepts)
		verifyOK bool   // whether Verify accepts the file
	}
	cases := []struct {
		name   string
		change func(t *testing.T, path string, data []byte)
		want   outcome
	}{
		{"sed -i (new file renamed over, one value changed)", func(t *testing.T, path string, data []byte) {
			edited := bytes.Replace(data, []byte(`"rho":0.125`), []byte(`"rho":0.001`), 1)
			replace(t, path, edited)
		}, outcome{"replaced", ErrCorrupt, false}},
		{"sed -i that changed nothing", func(t *testing.T, path string, data []byte) {
			replace(t, path, data)
		}, outcome{"replaced", nil, true}},
		{"deleted", func(t *testing.T, path string, _ []byte) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, outcome{"deleted", nil, true}},
		{"truncated mid-entry", func(t *testing.T, path string, data []byte) {
			if err := os.Truncate(path, int64(len(data)-20)); err != nil {
				t.Fatal(err)
			}
		}, outcome{"truncated", ErrTornTail, false}},
		{"earlier line edited in place, same length", func(t *testing.T, path string, data []byte) {
			off := lineStart(data, 2) + bytes.Index(data[lineStart(data, 2):], []byte("alice"))
			writeAt(t, path, off, []byte("bobby"))
		}, outcome{"edited", ErrCorrupt, false}},
		{"garbage appended", func(t *testing.T, path string, _ []byte) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("{\"seq\":6,\"forged\":true}\n")
			f.Close()
		}, outcome{"grown", ErrCorrupt, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, path := openLog(t, 4)
			if err := appendOne(l); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			old, err := os.Open(path) // the inode the Log writes
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			c.change(t, path, data)

			// The running Log refuses, and keeps refusing.
			for range 2 {
				err := appendOne(l)
				var te *TamperError
				if !errors.Is(err, ErrTampered) || !errors.As(err, &te) || te.What != c.want.what || !strings.Contains(err.Error(), path) {
					t.Fatalf("append after the change: %v, want a TamperError %q naming the path", err, c.want.what)
				}
			}
			if seq, _ := l.Head(); seq != 5 {
				t.Fatalf("head moved to %d", seq)
			}
			// Nothing was written into the file it had open.
			if st, _ := old.Stat(); st.Size() > int64(len(data)) && c.want.what != "grown" {
				t.Fatalf("the Log wrote into the file it had open (%d > %d bytes)", st.Size(), len(data))
			}
			if c.want.what == "deleted" {
				return
			}

			// A fresh Open (the daemon restarted) and Verify agree.
			l.Close()
			cur, _ := os.ReadFile(path)
			_, verr := Verify(bytes.NewReader(cur))
			if (verr == nil) != c.want.verifyOK {
				t.Fatalf("Verify: %v", verr)
			}
			l2, err := Open(path)
			if l2 != nil {
				l2.Close()
			}
			if c.want.open == nil {
				if err != nil {
					t.Fatalf("fresh Open: %v", err)
				}
			} else if !errors.Is(err, c.want.open) {
				t.Fatalf("fresh Open: %v, want %v", err, c.want.open)
			}
			if (err == nil) != (verr == nil) {
				t.Fatalf("Open (%v) and Verify (%v) disagree", err, verr)
			}
		})
	}
}

// Entries removed from the end leave a valid, shorter chain: the running
// Log sees the file shrink, and a fresh Open or VerifyExpectHead see it
// against a head recorded earlier.
func TestTruncationAtEntryBoundary(t *testing.T) {
	l, path := openLog(t, 4)
	if err := appendOne(l); err != nil {
		t.Fatal(err)
	}
	_, head := l.Head()
	data, _ := os.ReadFile(path)
	if err := os.Truncate(path, int64(lineStart(data, 5))); err != nil {
		t.Fatal(err)
	}
	var te *TamperError
	if err := appendOne(l); !errors.As(err, &te) || te.What != "truncated" {
		t.Fatalf("append after truncation: %v", err)
	}
	l.Close()
	cur, _ := os.ReadFile(path)
	if _, _, _, err := VerifyExpectHead(bytes.NewReader(cur), head); !errors.Is(err, ErrHeadMissing) {
		t.Fatalf("VerifyExpectHead: %v", err)
	}
	if l2, err := OpenWith(path, Options{ExpectHead: head}); !errors.Is(err, ErrHeadMissing) {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("Open with the recorded head: %v", err)
	}
	// Without a recorded head both accept it: the documented limit.
	if _, err := Verify(bytes.NewReader(cur)); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	// The head of an entry still there is found.
	_, head4 := func() (uint64, string) {
		lines := strings.SplitAfter(string(cur), "\n")
		e, _ := parseLine([]byte(strings.TrimSuffix(lines[3], "\n")))
		return e.Seq, e.Hash
	}()
	if _, _, seq, err := VerifyExpectHead(bytes.NewReader(cur), head4); err != nil || seq != 4 {
		t.Fatalf("VerifyExpectHead of seq 4: %d %v", seq, err)
	}
	l3, err := OpenWith(path, Options{ExpectHead: head4})
	if err != nil {
		t.Fatal(err)
	}
	l3.Close()
}

// Open verifies the whole chain by default (it used to check only the last
// entry), so a daemon refuses what `fedstat audit verify` rejects.
// TailOnly keeps the old, faster check of the last entries.
func TestOpenVerifiesWholeChain(t *testing.T) {
	path, data := writeLog(t, 6)
	off := lineStart(data, 2) + bytes.Index(data[lineStart(data, 2):], []byte("alice"))
	writeAt(t, path, off, []byte("bobby"))
	_, verr := Verify(bytes.NewReader(mustRead(t, path)))
	var ve *VerifyError
	if !errors.As(verr, &ve) || ve.Line != 2 {
		t.Fatalf("Verify: %v", verr)
	}
	_, err := Open(path)
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ve) || ve.Line != 2 {
		t.Fatalf("Open: %v, want ErrCorrupt at line 2", err)
	}
	l, err := OpenWith(path, Options{TailOnly: true})
	if err != nil {
		t.Fatalf("TailOnly: %v", err)
	}
	l.Close()
	// TailOnly still checks the link of the last entry.
	path, data = writeLog(t, 3)
	lines := strings.SplitAfter(string(data), "\n")
	os.WriteFile(path, []byte(lines[0]+lines[2]), 0o600)
	if _, err := OpenWith(path, Options{TailOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("TailOnly with a broken last link: %v", err)
	}
}

func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".sed"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Check reports a replaced file without appending, and the Log then refuses
// appends as after a failed one.
func TestCheckSeesTamperingWithoutAppending(t *testing.T) {
	l, path := openLog(t, 3)
	if err := l.Check(); err != nil {
		t.Fatalf("Check of an untouched log: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	replace(t, path, data)
	err = l.Check()
	var te *TamperError
	if !errors.As(err, &te) || te.What != "replaced" {
		t.Fatalf("Check after sed -i: %v, want a TamperError (replaced)", err)
	}
	if err := appendOne(l); !errors.Is(err, ErrTampered) {
		t.Errorf("append after Check found tampering: %v", err)
	}
	l.Close()
	if err := l.Check(); !errors.Is(err, ErrClosed) {
		t.Errorf("Check after Close: %v", err)
	}
}
