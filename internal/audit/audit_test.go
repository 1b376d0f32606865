package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock returns a clock that advances 1 ms a call from a fixed start.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

// writeLog appends n entries to a new log in dir and returns its path and
// contents.
func writeLog(t *testing.T, n int) (string, []byte) { return writeLogF(t, n) }

func writeLogF(t testing.TB, n int) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenWith(path, Options{Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		err := l.Append(ctx, Entry{
			Actor: "node-a", Action: []string{"query.received", "budget.debit", "partial.released"}[i%3],
			QueryID: fmt.Sprintf("q-%d", i/3),
			Details: map[string]any{"rho": 0.125, "analyst": "alice <a&b>", "n": i},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestAppendVerifyAndFormat(t *testing.T) {
	path, data := writeLog(t, 5)
	n, head, err := VerifyHead(bytes.NewReader(data))
	if err != nil || n != 5 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["seq"].(float64) != 1 || first["prev"] != ZeroHash || first["time"] != "2026-11-23T12:00:00.001Z" {
		t.Fatalf("first entry %v", first)
	}
	if !strings.HasPrefix(lines[0], `{"seq":1,"time":"2026-11-23T12:00:00.001Z","actor":"node-a","action":"query.received","query_id":"q-0","details":{"analyst":"alice \u003ca\u0026b\u003e","n":0,"rho":0.125},"prev":"0000`) {
		t.Fatalf("line 1 not in the documented form:\n%s", lines[0])
	}
	// The documented hash: SHA-256 of the line without the hash field.
	i := strings.Index(lines[4], `,"hash":"`)
	if got := hashOf([]byte(lines[4][:i] + "}")); got != head || !strings.HasSuffix(lines[4], `"hash":"`+head+`"}`) {
		t.Fatalf("head %s, recomputed %s", head, got)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
}

func TestEveryByteFlipDetected(t *testing.T) {
	_, data := writeLog(t, 4)
	lineOf := make([]int, len(data)) // 1-based line of each byte
	ln := 1
	for i, c := range data {
		lineOf[i] = ln
		if c == '\n' {
			ln++
		}
	}
	for _, mask := range []byte{0x01, 0x20, 0x80} {
		for i := range data {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			_, err := Verify(bytes.NewReader(bad))
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("flip %#x at byte %d (line %d, %q): not detected (%v)", mask, i, lineOf[i], data[i], err)
			}
			if ve.Line < lineOf[i] || ve.Line > lineOf[i]+1 {
				t.Fatalf("flip %#x at byte %d on line %d reported at line %d: %v", mask, i, lineOf[i], ve.Line, ve)
			}
			if ve.Line != lineOf[i] {
				// Only acceptable when the flipped byte is the newline
				// that ends the line.
				if data[i] != '\n' {
					t.Fatalf("flip %#x at byte %d on line %d reported at line %d: %v", mask, i, lineOf[i], ve.Line, ve)
				}
			}
		}
	}
}

func TestDeletionReorderingTruncation(t *testing.T) {
	_, data := writeLog(t, 6)
	lines := strings.SplitAfter(string(data), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last "\n"
	join := func(ls ...string) string { return strings.Join(ls, "") }
	cases := []struct {
		name     string
		log      string
		wantLine int
		reason   string
	}{
		{"delete middle", join(lines[0], lines[1], lines[3], lines[4], lines[5]), 3, "seq 4 where 3"},
		{"delete first", join(lines[1:]...), 1, "seq 2 where 1"},
		{"swap", join(lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]), 2, "seq 3 where 2"},
		{"duplicate", join(lines[0], lines[1], lines[1], lines[2]), 3, "seq 2 where 3"},
		{"torn last", join(lines[0], lines[1], lines[2][:40]), 3, "not terminated"},
		{"blank line", join(lines[0], "\n", lines[1]), 2, "bad JSON"},
	}
	for _, c := range cases {
		_, err := Verify(strings.NewReader(c.log))
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Line != c.wantLine || !strings.Contains(ve.Reason, c.reason) {
			t.Errorf("%s: got %v, want line %d %q", c.name, err, c.wantLine, c.reason)
		}
	}
	// Removing whole entries from the end leaves a valid, shorter chain:
	// only a head recorded elsewhere shows it.
	n, head, err := VerifyHead(strings.NewReader(join(lines[:5]...)))
	_, fullHead, _ := VerifyHead(bytes.NewReader(data))
	if err != nil || n != 5 || head == fullHead {
		t.Fatalf("truncated log: n=%d err=%v", n, err)
	}
	if n, err := Verify(strings.NewReader("")); n != 0 || err != nil {
		t.Fatalf("empty log: %d %v", n, err)
	}
}

func TestRewrittenContentNeedsWholeChainRewrite(t *testing.T) {
	// Changing a value and recomputing that entry's hash is caught by the
	// next entry's prev.
	_, data := writeLog(t, 3)
	lines := strings.SplitAfter(string(data), "\n")
	e, reason := parseLine([]byte(strings.TrimSuffix(lines[1], "\n")))
	if reason != "" {
		t.Fatal(reason)
	}
	d, _ := json.Marshal(map[string]any{"rho": 0})
	b := body(e.Seq, e.Time, e.Actor, e.Action, e.QueryID, d, e.Prev)
	lines[1] = string(line(b, hashOf(b)))
	_, err := Verify(strings.NewReader(strings.Join(lines, "")))
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Line != 3 || !strings.Contains(ve.Reason, "broken chain") {
		t.Fatalf("got %v, want broken chain at line 3", err)
	}
}

func TestTimeMustIncrease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	fixed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := OpenWith(path, Options{Now: func() time.Time { return fixed }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var times []time.Time
	for range 3 {
		e, err := l.AppendEntry(ctx, Entry{Actor: "c", Action: "x"})
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, e.Time)
	}
	l.Close()
	if !times[1].After(times[0]) || !times[2].After(times[1]) {
		t.Fatalf("times not increasing under a stopped clock: %v", times)
	}
	data, _ := os.ReadFile(path)
	if _, err := Verify(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// A log whose times go back is refused even with correct hashes.
	lines := strings.SplitAfter(string(data), "\n")
	e, _ := parseLine([]byte(strings.TrimSuffix(lines[1], "\n")))
	b := body(e.Seq, fixed.Add(-time.Hour), e.Actor, e.Action, e.QueryID, []byte("{}"), e.Prev)
	lines[1] = string(line(b, hashOf(b)))
	_, err = Verify(strings.NewReader(lines[0] + lines[1]))
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Line != 2 || !strings.Contains(ve.Reason, "not after") {
		t.Fatalf("got %v", err)
	}
}

func TestOpenResumesChainAndConcurrentAppends(t *testing.T) {
	path, _ := writeLog(t, 3)
	l, err := OpenWith(path, Options{VerifyAll: true})
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := l.Head(); seq != 3 {
		t.Fatalf("resumed at seq %d", seq)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if err := l.Append(context.Background(), Entry{Actor: fmt.Sprintf("g%d", g), Action: "step", Details: map[string]any{"i": i}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	seq, head := l.Head()
	// A second writer is refused while the first has the log open.
	if l2, err := Open(path); !errors.Is(err, ErrInUse) {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second writer: %v", err)
	}
	l.Close()
	if l2, err := Open(path); err != nil {
		t.Fatalf("reopen after close: %v", err)
	} else {
		l2.Close()
	}
	if err := l.Append(context.Background(), Entry{Actor: "a", Action: "b"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	data, _ := os.ReadFile(path)
	n, h, err := VerifyHead(bytes.NewReader(data))
	if err != nil || n != 83 || seq != 83 || h != head {
		t.Fatalf("after concurrent appends: n=%d seq=%d err=%v", n, seq, err)
	}
}

func TestOpenRefusesCorruptAndRepairsTornTail(t *testing.T) {
	path, data := writeLog(t, 3)
	// Corrupt last entry.
	bad := bytes.Clone(data)
	bad[len(bad)-10] ^= 1
	os.WriteFile(path, bad, 0o600)
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt tail: %v", err)
	}
	// Torn last write.
	torn := append(bytes.Clone(data), `{"seq":4,"time":"2026`...)
	os.WriteFile(path, torn, 0o600)
	if _, err := Open(path); !errors.Is(err, ErrTornTail) {
		t.Fatalf("torn tail: %v", err)
	}
	l, err := OpenWith(path, Options{RepairTornTail: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), Entry{Actor: "n", Action: "after-repair"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	got, _ := os.ReadFile(path)
	if n, err := Verify(bytes.NewReader(got)); err != nil || n != 4 {
		t.Fatalf("after repair: %d %v", n, err)
	}
	saved, _ := filepath.Glob(path + ".torn-*")
	if len(saved) != 1 {
		t.Fatalf("torn bytes not saved: %v", saved)
	}
	// Mode.
	os.Chmod(path, 0o644)
	if _, err := Open(path); !errors.Is(err, ErrInsecure) {
		t.Fatalf("mode 0644: %v", err)
	}
}

func TestAppendValidates(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(context.Background(), Entry{Action: "x"}); !errors.Is(err, ErrBadEntry) {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), Entry{Actor: "a", Action: "x", Details: map[string]any{"f": func() {}}}); !errors.Is(err, ErrBadEntry) {
		t.Fatal(err)
	}
	if seq, _ := l.Head(); seq != 0 {
		t.Fatal("a refused entry was written")
	}
}

func TestScan(t *testing.T) {
	_, data := writeLog(t, 4)
	var got []Entry
	if err := Scan(bytes.NewReader(data), func(_ int, e Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		b, err := json.Marshal(e)
		if err != nil || !bytes.HasPrefix(data, nil) || !bytes.Contains(data, append(b, '\n')) {
			t.Fatalf("entry %d marshals to %s, not its line", i, b)
		}
	}
	if len(got) != 4 || got[3].Seq != 4 || got[1].Action != "budget.debit" || got[2].Details["rho"] != json.Number("0.125") {
		t.Fatalf("scan: %+v", got)
	}
}

// TestDocumentedLine pins the format: the example line of docs/audit.md
// verifies and its hash is SHA-256 of the line without the hash field.
func TestDocumentedLine(t *testing.T) {
	const doc = `{"seq":1,"time":"2026-11-23T12:00:00.001Z","actor":"node-a","action":"query.received","query_id":"q-0","details":{"analyst":"alice","rho":0.125},"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"4c343c05cbe127e749115e3bd47223aaea0d959e9ca12c1d388962093c7137db"}`
	n, head, err := VerifyHead(strings.NewReader(doc + "\n"))
	if err != nil || n != 1 || head != "4c343c05cbe127e749115e3bd47223aaea0d959e9ca12c1d388962093c7137db" {
		t.Fatalf("documented line: n=%d head=%s err=%v", n, head, err)
	}
	i := strings.LastIndex(doc, `,"hash":`)
	if hashOf([]byte(doc[:i]+"}")) != head {
		t.Fatal("hash is not SHA-256 of the line without the hash field")
	}
}

// VerifyScan hands fn only entries that verified, in order, and stops at
// the first that does not or at fn's error, which it returns as is.
func TestVerifyScan(t *testing.T) {
	_, data := writeLog(t, 6)
	lines := strings.SplitAfter(string(data), "\n")
	var seen []uint64
	collect := func(_ int, e Entry) error { seen = append(seen, e.Seq); return nil }
	n, head, err := VerifyScan(strings.NewReader(string(data)), collect)
	wn, whead, _ := VerifyHead(strings.NewReader(string(data)))
	if err != nil || n != 6 || n != wn || head != whead || len(seen) != 6 || seen[5] != 6 {
		t.Fatalf("VerifyScan = %d, %s, %v; saw %v; VerifyHead %d, %s", n, head, err, seen, wn, whead)
	}
	seen = nil
	broken := strings.Join([]string{lines[0], lines[1], lines[3], lines[4]}, "")
	var ve *VerifyError
	if _, _, err := VerifyScan(strings.NewReader(broken), collect); !errors.As(err, &ve) || ve.Line != 3 || len(seen) != 2 {
		t.Fatalf("deleted entry: %v, saw %v; want a *VerifyError at line 3 after 2 entries", err, seen)
	}
	stop := errors.New("stop")
	if n, _, err := VerifyScan(strings.NewReader(string(data)), func(_ int, e Entry) error {
		if e.Seq == 2 {
			return stop
		}
		return nil
	}); err != stop || n != 2 {
		t.Fatalf("fn's error: %d, %v", n, err)
	}
}
