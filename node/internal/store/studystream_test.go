package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
)

// claimsSchema is an insurer's claims table: several rows per person.
func claimsSchema(t testing.TB, rowsPerPerson int) *cdm.StudySchema {
	t.Helper()
	s, err := cdm.ParseStudySchema(fmt.Sprintf(`
name = "claims"
id = "resident_id"
rows_per_patient = %d
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
`, rowsPerPerson), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// genSource yields n claims rows in chunks of size, row i of person
// person(i); bad, when >= 0, is a row number reported as bad by the source.
type genSource struct {
	schema *cdm.StudySchema
	n, at  int
	size   int
	person func(i int) string
	bad    int
	// cancel, when set, is called before the chunk that holds row
	// cancelAt.
	cancel   func()
	cancelAt int
	progress func(rows int)
}

func (g *genSource) Next() (*StudyChunk, error) {
	if g.at >= g.n {
		return nil, io.EOF
	}
	if g.cancel != nil && g.at+g.size > g.cancelAt {
		g.cancel()
	}
	st := &cdm.Study{Schema: *g.schema, Numbers: map[string][]float64{}, Strings: map[string][]string{}, Dates: map[string][]cdm.Date{}}
	c := &StudyChunk{Rows: st}
	kinds := []string{"inpatient", "outpatient", "pharmacy"}
	for ; g.at < g.n && len(st.PatientIDs)+len(c.Bad) < g.size; g.at++ {
		i := g.at
		o := cdm.Origin{File: "claims.csv", Line: i + 2, Entry: -1}
		if i == g.bad {
			c.Bad = append(c.Bad, &cdm.RecordError{Origin: o, Path: "amount", Err: errors.New(`"x" is not a number`)})
			continue
		}
		st.PatientIDs = append(st.PatientIDs, g.person(i))
		st.Numbers["amount"] = append(st.Numbers["amount"], float64(i%5000)+0.5)
		st.Strings["kind"] = append(st.Strings["kind"], kinds[i%3])
		st.Dates["claim_date"] = append(st.Dates["claim_date"], cdm.DateFromYMD(2023, 1, 1)+cdm.Date(i%365))
		c.Origins = append(c.Origins, o)
	}
	if g.progress != nil {
		g.progress(g.at)
	}
	return c, nil
}

func claims(t testing.TB, n, rowsPerPerson, bad int) *genSource {
	return &genSource{schema: claimsSchema(t, rowsPerPerson), n: n, size: 5000, bad: bad,
		person: func(i int) string { return "11010119900307" + strconv.Itoa(i/rowsPerPerson) }}
}

// dumpAll renders every table (CDM and study) row by row, sorted, from
// the columnar copy alone.
func dumpAll(t *cdm.Tables) map[string][]string {
	out := map[string][]string{}
	for _, name := range t.Names() {
		tb, _ := t.Table(name)
		rows := make([]string, tb.Rows)
		for i := range tb.Rows {
			var b strings.Builder
			b.WriteString(t.PatientIDs[tb.Patient[i]])
			for _, c := range slices.Sorted(maps.Keys(tb.Strings)) {
				col := tb.Strings[c]
				b.WriteString("|" + c + "=" + col.Dict.Value(col.IDs[i]))
			}
			for _, c := range slices.Sorted(maps.Keys(tb.Dates)) {
				b.WriteString("|" + c + "=" + tb.Dates[c][i].String())
			}
			for _, c := range slices.Sorted(maps.Keys(tb.Numbers)) {
				fmt.Fprintf(&b, "|%s=%v", c, tb.Numbers[c][i])
			}
			rows[i] = b.String()
		}
		slices.Sort(rows)
		out[name] = rows
	}
	return out
}

func studyKeys(t testing.TB, db *kv.DB) (chunks, metas, legacy int) {
	t.Helper()
	count := func(p []byte) (n int) {
		if err := db.View(func(tx *kv.Txn) error {
			return tx.IterateKeys(p, func([]byte) error { n++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return count(prefixStudyChunks), count(prefixStudyMeta), count(prefixStudies)
}

// TestStudyStreamAllOrNothing: a bad row near the end of a large study
// leaves the stored version of that table, the other study tables and the
// CDM tables as they were, and no staged rows behind.
func TestStudyStreamAllOrNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, db := openStore(t, dir)
	defer func() { db.Close() }()
	if _, err := s.ImportRecords(ctx, synth("a", 20, 2), "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportStudy(testStudy(t, "p1", "p2"), "trial.csv"); err != nil {
		t.Fatal(err)
	}
	n := 200_000
	if raceEnabled {
		n = 60_000 // still ten chunks or more
	}
	sum, err := s.ImportStudyFrom(ctx, claimsSchema(t, 4), claims(t, n, 4, -1), StudyImportOptions{Source: "v1.csv"})
	if err != nil || !sum.Changed || sum.Rows != n || sum.Persons != n/4 {
		t.Fatalf("first version: %+v, %v", sum, err)
	}
	before := dumpAll(s.Tables())
	chunks, _, _ := studyKeys(t, db)
	if chunks < 10 {
		t.Fatalf("%d chunks for %d rows: the test does not span chunks", chunks, n)
	}

	// A second version with one bad row near the end.
	g := claims(t, n+100, 4, n+90)
	g.person = func(i int) string { return "v2-" + strconv.Itoa(i/4) }
	_, err = s.ImportStudyFrom(ctx, claimsSchema(t, 4), g, StudyImportOptions{Source: "claims.csv"})
	var re *StudyRowsError
	if !errors.As(err, &re) || !errors.Is(err, ErrBadStudy) || re.Total != 1 {
		t.Fatalf("bad row: got %v, want one bad row", err)
	}
	if msg := re.Errors[0].Error(); !strings.HasPrefix(msg, fmt.Sprintf("claims.csv:%d: amount: ", n+92)) {
		t.Errorf("error %q does not name file:line and column", msg)
	}
	if !reflect.DeepEqual(dumpAll(s.Tables()), before) {
		t.Fatal("a refused import changed the tables")
	}
	if c, m, _ := studyKeys(t, db); c != chunks || m != 2 {
		t.Fatalf("after the refused import: %d chunks, %d metas; want %d and 2", c, m, chunks)
	}
	// And the store still opens to the same tables.
	db.Close()
	s, db = openStore(t, dir)
	if !reflect.DeepEqual(dumpAll(s.Tables()), before) {
		t.Fatal("tables differ after reopen")
	}
}

// TestStudyRowsPerPatientAcrossChunks: a person's rows may be anywhere in
// the input; the bound holds over the whole import, and the excess row is
// named.
func TestStudyRowsPerPatientAcrossChunks(t *testing.T) {
	ctx := context.Background()
	s, db := openStore(t, t.TempDir())
	defer db.Close()
	const n = 60_000
	// Person i%20000: rows 0, 20000 and 40000 of person 0 are chunks apart.
	spread := func(rpp int) *genSource {
		g := claims(t, n, rpp, -1)
		g.person = func(i int) string { return "r" + strconv.Itoa(i%20000) }
		return g
	}
	_, err := s.ImportStudyFrom(ctx, claimsSchema(t, 2), spread(2), StudyImportOptions{})
	var re *StudyRowsError
	if !errors.As(err, &re) || re.Total != 20000 {
		t.Fatalf("rows_per_patient 2, 3 rows each: got %v", err)
	}
	if msg := re.Errors[0].Error(); !strings.HasPrefix(msg, fmt.Sprintf("claims.csv:%d: resident_id: ", 40002)) || !strings.Contains(msg, `"r0" has more than 2 row(s)`) {
		t.Errorf("first error %q: want the third row of r0 at line 40002", msg)
	}
	if len(re.Errors) != 20 {
		t.Errorf("%d errors listed, want the first 20", len(re.Errors))
	}
	if _, ok := s.Tables().Table("claims"); ok {
		t.Fatal("refused study is visible")
	}
	if c, m, _ := studyKeys(t, db); c != 0 || m != 0 {
		t.Fatalf("%d chunks, %d metas left by a refused import", c, m)
	}
	sum, err := s.ImportStudyFrom(ctx, claimsSchema(t, 3), spread(3), StudyImportOptions{})
	if err != nil || sum.Rows != n || sum.Persons != 20000 {
		t.Fatalf("rows_per_patient 3: %+v, %v", sum, err)
	}
	tb, _ := s.Tables().Table("claims")
	if tb.Rows != n || s.Tables().NumPatients() != 20000 {
		t.Fatalf("claims: %d rows, %d patients", tb.Rows, s.Tables().NumPatients())
	}
}

// TestStudyStreamReplaceAndUnchanged: a replaced version's rows are
// deleted; the same rows again change nothing and leave no staging; person
// ids are stored as given.
func TestStudyStreamReplaceAndUnchanged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, db := openStore(t, dir)
	if _, err := s.ImportStudyFrom(ctx, claimsSchema(t, 4), claims(t, 30_000, 4, -1), StudyImportOptions{}); err != nil {
		t.Fatal(err)
	}
	c1, _, _ := studyKeys(t, db)
	sum, err := s.ImportStudyFrom(ctx, claimsSchema(t, 4), claims(t, 30_000, 4, -1), StudyImportOptions{})
	if err != nil || sum.Changed || !sum.Replaced {
		t.Fatalf("same rows: %+v, %v", sum, err)
	}
	if c, _, _ := studyKeys(t, db); c != c1 {
		t.Fatalf("unchanged import left %d chunks, want %d", c, c1)
	}
	var progressed int
	g := claims(t, 10_000, 4, -1)
	sum, err = s.ImportStudyFrom(ctx, claimsSchema(t, 4), g, StudyImportOptions{Progress: func(n int) { progressed = n }})
	if err != nil || !sum.Changed || sum.Rows != 10_000 || progressed != 10_000 {
		t.Fatalf("replace: %+v, %v, progress %d", sum, err, progressed)
	}
	c2, _, _ := studyKeys(t, db)
	if c2 >= c1 {
		t.Fatalf("old version's chunks not deleted: %d then %d", c1, c2)
	}
	db.Close()
	s, db = openStore(t, dir)
	defer db.Close()
	tb, ok := s.Tables().Table("claims")
	if !ok || tb.Rows != 10_000 {
		t.Fatalf("after reopen: %v", tb)
	}
	i, ok := s.Tables().PatientIndex("110101199003071")
	if !ok || tb.Patient[4] != i || tb.Numbers["amount"][4] != 4.5 || tb.Strings["kind"].Dict.Value(tb.Strings["kind"].IDs[4]) != "outpatient" {
		t.Fatalf("row 4 not read back as written")
	}
}

// TestStudyCancel: a cancelled import (Ctrl-C) leaves the old version and
// no staged rows.
func TestStudyCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, db := openStore(t, t.TempDir())
	defer db.Close()
	if _, err := s.ImportStudyFrom(ctx, claimsSchema(t, 4), claims(t, 8000, 4, -1), StudyImportOptions{}); err != nil {
		t.Fatal(err)
	}
	before := dumpAll(s.Tables())
	c1, _, _ := studyKeys(t, db)
	g := claims(t, 100_000, 4, -1)
	g.cancel, g.cancelAt = cancel, 80_000
	if _, err := s.ImportStudyFrom(ctx, claimsSchema(t, 4), g, StudyImportOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want cancelled", err)
	}
	if !reflect.DeepEqual(dumpAll(s.Tables()), before) {
		t.Fatal("cancelled import changed the tables")
	}
	if c, _, _ := studyKeys(t, db); c != c1 {
		t.Fatalf("%d chunks after a cancelled import, want %d", c, c1)
	}
}

// TestLegacyStudyRecord: a study stored whole by an earlier version
// (d/s/<name>) opens, and the next import replaces it.
func TestLegacyStudyRecord(t *testing.T) {
	dir := t.TempDir()
	s, db := openStore(t, dir)
	st := testStudy(t, "p1", "p2", "p3")
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&studyRecord{Study: st, Source: "old.csv", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *kv.Txn) error { return tx.Set(legacyStudyKey("trial"), buf.Bytes()) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, db = openStore(t, dir)
	defer db.Close()
	tb, ok := s.Tables().Table("trial")
	if !ok || tb.Rows != 3 || !math.IsNaN(tb.Numbers["x"][0]) {
		t.Fatalf("legacy study: %v %v", ok, tb)
	}
	if sum, err := s.ImportStudy(testStudy(t, "p1", "p2", "p3"), "again.csv"); err != nil || sum.Changed {
		t.Fatalf("same rows as the legacy record: %+v, %v", sum, err)
	}
	if sum, err := s.ImportStudy(testStudy(t, "p1", "p2"), "new.csv"); err != nil || !sum.Changed || !sum.Replaced {
		t.Fatalf("replace legacy: %+v, %v", sum, err)
	}
	if c, m, l := studyKeys(t, db); c != 1 || m != 1 || l != 0 {
		t.Fatalf("keys: %d chunks, %d metas, %d legacy", c, m, l)
	}
}

const studyKillEnv = "FEDSTAT_STUDY_KILL_CHILD"

// TestStudyKillChild is the child of TestSIGKILLMidStudyImport.
func TestStudyKillChild(t *testing.T) {
	dir := os.Getenv(studyKillEnv)
	if dir == "" {
		t.Skip("child process of TestSIGKILLMidStudyImport")
	}
	db, err := kv.Open(kv.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := claims(t, 5_000_000, 4, -1)
	g.progress = func(n int) {
		if n%100_000 == 0 {
			fmt.Println("child: rows", n)
		}
	}
	if _, err := s.ImportStudyFrom(context.Background(), claimsSchema(t, 4), g, StudyImportOptions{}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("child: committed")
	time.Sleep(time.Minute)
}

// TestSIGKILLMidStudyImport: a study import killed while staging leaves
// the old version in service, and the next open removes its rows.
func TestSIGKILLMidStudyImport(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	s, db := openStore(t, dir)
	if _, err := s.ImportStudyFrom(context.Background(), claimsSchema(t, 4), claims(t, 20_000, 4, -1), StudyImportOptions{}); err != nil {
		t.Fatal(err)
	}
	before := dumpAll(s.Tables())
	chunks, _, _ := studyKeys(t, db)
	db.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestStudyKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), studyKillEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	seen := 0
	for sc.Scan() {
		if strings.Contains(sc.Text(), "child: committed") {
			t.Fatal("child committed before it was killed")
		}
		if strings.Contains(sc.Text(), "child: rows") {
			if seen++; seen == 3 { // 300,000 rows staged: many chunks on disk
				break
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if seen < 3 {
		t.Fatalf("child ended early (%d progress lines)", seen)
	}
	var logs strings.Builder
	db, err = kv.Open(kv.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = Open(context.Background(), db, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "removed study rows left by an interrupted") {
		t.Errorf("no staged rows of the killed import were on disk; recovery not exercised:\n%s", logs.String())
	}
	if !reflect.DeepEqual(dumpAll(s.Tables()), before) {
		t.Fatal("tables changed by a killed study import")
	}
	if c, _, _ := studyKeys(t, db); c != chunks {
		t.Fatalf("%d chunks after recovery, want %d", c, chunks)
	}
}

// TestLegacySchemaZeroMin: gob drops a pointer to zero; a legacy study
// whose column has min = 0 opens with min 0 again.
func TestLegacySchemaZeroMin(t *testing.T) {
	dir := t.TempDir()
	s, db := openStore(t, dir)
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&studyRecord{Study: testStudy(t, "p1")}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *kv.Txn) error { return tx.Set(legacyStudyKey("trial"), buf.Bytes()) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, db = openStore(t, dir)
	defer db.Close()
	sc := s.Studies()
	if len(sc) != 1 || sc[0].Columns[0].Min == nil || *sc[0].Columns[0].Min != 0 || *sc[0].Columns[0].Max != 10 {
		t.Fatalf("legacy schema %+v", sc)
	}
}
