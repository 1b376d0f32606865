package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
)

const claimsSchemaText = `
name = "claims"
id = "resident_id"
rows_per_patient = 12
[[columns]]
name = "amount"
type = "float"
min = 0
max = 100000
[[columns]]
name = "kind"
type = "string"
values = ["inpatient", "outpatient", "pharmacy"]
[[columns]]
name = "claim_date"
type = "date"
`

// writeClaims writes an insurer's claims CSV of n rows, 10 per resident
// (resident ids as a civil registry writes them), with row bad (0-based,
// -1 none) carrying an amount that is not a number.
func writeClaims(t testing.TB, path string, n, bad int, tag string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "claim_id,resident_id,amount,kind,claim_date")
	kinds := []string{"inpatient", "outpatient", "pharmacy"}
	for i := range n {
		amount := strconv.Itoa(i%9000) + ".25"
		if i == bad {
			amount = "12,50"
			amount = `"` + amount + `"`
		}
		d := cdm.DateFromYMD(2023, 1, 1) + cdm.Date(i%365)
		fmt.Fprintf(w, "%s%d,1101011990%08d,%s,%s,%s\n", tag, i, i/10, amount, kinds[i%3], d)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func claimsSchema(t testing.TB) *cdm.StudySchema {
	t.Helper()
	s, err := cdm.ParseStudySchema(claimsSchemaText, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestImportStudyBadRowNearEnd: a claims file with one bad cell near its
// end fails whole, naming file:line and column, and the stored version of
// the table and the other tables stay as they were.
func TestImportStudyBadRowNearEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "node")
	good := filepath.Join(dir, "claims-2023.csv")
	writeClaims(t, good, 50_000, -1, "a")
	o := ImportOptions{DataDir: data}
	sum, err := ImportStudy(ctx, o, claimsSchema(t), good)
	if err != nil || sum.Rows != 50_000 || sum.Persons != 5_000 || !sum.Changed {
		t.Fatalf("good file: %+v, %v", sum, err)
	}
	before, err := GetStatus(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before.Studies) != "[{claims 50000 5000}]" || before.Tables["claims"] != 50000 {
		t.Fatalf("status studies %v, tables %v", before.Studies, before.Tables)
	}
	n := 300_000
	if raceEnabled {
		n = 60_000 // still many chunks
	}
	bad := filepath.Join(dir, "claims-2024.csv")
	writeClaims(t, bad, n, n-7, "b")
	_, err = ImportStudy(ctx, o, claimsSchema(t), bad)
	var ie *ImportError
	if !errors.As(err, &ie) || ie.Total != 1 || !errors.Is(err, ErrBadInput) {
		t.Fatalf("bad file: got %v, want one bad record", err)
	}
	// Row n-7 is on line n-7+2.
	if msg := ie.Errors[0].Error(); !strings.HasPrefix(msg, fmt.Sprintf("claims-2024.csv:%d: amount: ", n-5)) || !strings.Contains(msg, "not a number") {
		t.Errorf("error %q: want file:line, column and what is wrong", msg)
	}
	after, err := GetStatus(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after.Tables, after.Studies) != fmt.Sprint(before.Tables, before.Studies) {
		t.Fatalf("refused import changed the store: %v %v, was %v %v", after.Tables, after.Studies, before.Tables, before.Studies)
	}
}

const rssEnv = "FEDSTAT_STUDY_RSS_CHILD"

// TestStudyRSSChild imports the CSV named by FEDSTAT_STUDY_RSS_CHILD
// (file:datadir) and prints its figures; the child of TestStudyImportMemory.
func TestStudyRSSChild(t *testing.T) {
	env := os.Getenv(rssEnv)
	if env == "" {
		t.Skip("child process of TestStudyImportMemory")
	}
	csv, data, _ := strings.Cut(env, ":")
	t0 := time.Now()
	sum, err := ImportStudy(context.Background(), ImportOptions{DataDir: data}, claimsSchema(t), csv)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(t0)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("figures rows=%d persons=%d seconds=%.2f rss=%d heap=%d\n", sum.Rows, sum.Persons, el.Seconds(), maxRSS(), ms.HeapAlloc)
}

// TestStudyImportMemory measures a study import of many rows in a child
// process: its peak RSS must stay within the documented bound
// (docs/data.md): 600 MiB plus 100 bytes per row (Badger's memtables and
// caches, the store's in-memory copy of the table with GC headroom, the
// import's buffers).
// FEDSTAT_STUDY_RSS_ROWS sets the rows (default 1,000,000).
func TestStudyImportMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and imports a large file")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies memory; scripts/test.sh runs this test without it")
	}
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("FEDSTAT_STUDY_RSS_ROWS")); err == nil && v > 0 {
		n = v
	}
	dir := t.TempDir()
	csv := filepath.Join(dir, "claims.csv")
	writeClaims(t, csv, n, -1, "")
	fi, _ := os.Stat(csv)
	cmd := exec.Command(os.Args[0], "-test.run=^TestStudyRSSChild$", "-test.v")
	cmd.Env = append(os.Environ(), rssEnv+"="+csv+":"+filepath.Join(dir, "node"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var rows, persons, rss, heap int64
	var secs float64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "figures ") {
			fmt.Sscanf(line, "figures rows=%d persons=%d seconds=%f rss=%d heap=%d", &rows, &persons, &secs, &rss, &heap)
		}
	}
	if rows != int64(n) {
		t.Fatalf("child imported %d rows, want %d:\n%s", rows, n, out)
	}
	bound := int64(600<<20) + 100*int64(n)
	t.Logf("%d rows (%d persons, %.0f MB CSV) in %.1f s: %.0f rows/s, %.1f MB/s; peak RSS %d MiB (bound %d MiB), heap after import %d MiB",
		rows, persons, float64(fi.Size())/1e6, secs, float64(rows)/secs, float64(fi.Size())/1e6/secs, rss>>20, bound>>20, heap>>20)
	if rss > 0 && rss > bound {
		t.Errorf("peak RSS %d MiB exceeds the bound %d MiB", rss>>20, bound>>20)
	}
}

// TestStatusIdentifiers: the status counts the patients that carry an
// identifier of the network's system, when it is given.
func TestStatusIdentifiers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "node")
	const sys = "urn:oid:2.16.156.10011.1.1"
	nd := `{"resourceType":"Patient","id":"p1","identifier":[{"system":"` + sys + `","value":"110101199003074512"},{"system":"http://h/mrn","value":"M1"}]}
{"resourceType":"Patient","id":"p2","identifier":[{"system":"http://h/mrn","value":"M2"}]}
{"resourceType":"Patient","id":"p3"}
`
	if err := os.WriteFile(filepath.Join(dir, "Patient.ndjson"), []byte(nd), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, ImportOptions{DataDir: data}, []string{filepath.Join(dir, "Patient.ndjson")}); err != nil {
		t.Fatal(err)
	}
	st, err := GetStatusFor(ctx, data, "", sys)
	if err != nil {
		t.Fatal(err)
	}
	if ic := st.Identifiers; ic == nil || ic.With != 1 || ic.Patients != 3 || ic.System != sys {
		t.Fatalf("identifiers %+v, want 1 of 3", st.Identifiers)
	}
	if st, _ := GetStatus(ctx, data, ""); st.Identifiers != nil {
		t.Errorf("no system given, yet identifiers counted: %+v", st.Identifiers)
	}
}
