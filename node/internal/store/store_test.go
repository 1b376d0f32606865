package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
)

// synth makes n patients with m conditions each, ids prefixed by tag.
func synth(tag string, n, m int) *cdm.Records {
	r := &cdm.Records{}
	for i := range n {
		pid := fmt.Sprintf("%sp%d", tag, i)
		r.Patients = append(r.Patients, cdm.Patient{ID: pid, BirthDate: cdm.DateFromYMD(1950+i%50, 1, 1+i%28), Sex: cdm.Sex(1 + i%2), Region: fmt.Sprintf("R%d", i%5), DeathDate: cdm.NoDate})
		for j := range m {
			r.Conditions = append(r.Conditions, cdm.Condition{ID: fmt.Sprintf("%sc%d-%d", tag, i, j), PatientID: pid,
				Code: fmt.Sprintf("%d", 1000+j%20), System: cdm.SystemSNOMED, Onset: cdm.DateFromYMD(2020, 1, 1) + cdm.Date(j), Abatement: cdm.NoDate})
		}
		r.Observations = append(r.Observations, cdm.Observation{ID: pid + "o", PatientID: pid, Code: "4548-4", System: cdm.SystemLOINC, Date: cdm.DateFromYMD(2021, 3, 1), Value: 5 + float64(i%7), HasValue: true, Unit: "%"})
		r.Encounters = append(r.Encounters, cdm.Encounter{ID: pid + "e", PatientID: pid, Class: "AMB", TypeCode: "185349003", TypeSystem: cdm.SystemSNOMED, Start: cdm.DateFromYMD(2021, 3, 1), End: cdm.DateFromYMD(2021, 3, 2)})
		r.Medications = append(r.Medications, cdm.Medication{ID: pid + "m", PatientID: pid, Code: "310965", System: cdm.SystemRxNorm, Authored: cdm.DateFromYMD(2021, 3, 1)})
	}
	return r
}

func openStore(t testing.TB, dir string) (*Store, *kv.DB) {
	t.Helper()
	db, err := kv.Open(kv.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), db, nil)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return s, db
}

// dump renders a snapshot row by row, in a canonical order, for equality
// checks; missing values of trailing added columns (cdm.Column.Added) are
// left out, as the store leaves them out.
func dump(t *cdm.Tables) map[string][]string {
	out := map[string][]string{}
	for _, name := range t.Names() {
		tb, _ := t.Table(name)
		sch, _ := cdm.LookupTable(name)
		rows := make([]string, tb.Rows)
		for i := range tb.Rows {
			var b strings.Builder
			b.WriteString(t.PatientIDs[tb.Patient[i]])
			cut := b.Len() // the end of the row without its missing added columns
			for _, c := range sch.Columns {
				b.WriteByte('|')
				n := b.Len()
				switch c.Type {
				case cdm.TypeString:
					col := tb.Strings[c.Name]
					b.WriteString(col.Dict.Value(col.IDs[i]))
				case cdm.TypeDate:
					b.WriteString(tb.Dates[c.Name][i].String())
				case cdm.TypeNumber:
					fmt.Fprint(&b, tb.Numbers[c.Name][i])
				}
				if !c.Added || b.Len() > n {
					cut = b.Len()
				}
			}
			rows[i] = b.String()[:cut]
		}
		sortStrings(rows)
		out[name] = rows
	}
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func rowCounts(t *cdm.Tables) map[string]int {
	out := map[string]int{}
	for _, n := range t.Names() {
		tb, _ := t.Table(n)
		out[n] = tb.Rows
	}
	return out
}

func TestImportReopenReimportReplace(t *testing.T) {
	dir := t.TempDir()
	s, db := openStore(t, dir)
	ctx := context.Background()
	r := synth("a", 20, 3)
	sum, err := s.ImportRecords(ctx, r, "first")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Generation != 1 || sum.Added[cdm.TableConditions] != 60 || sum.Added[cdm.TablePatients] != 20 {
		t.Fatalf("summary %+v", sum)
	}
	want := r.TableCounts()
	if got := rowCounts(s.Tables()); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	before := dump(s.Tables())

	// Same records again: nothing changes, no new generation.
	sum, err = s.ImportRecords(ctx, synth("a", 20, 3), "again")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Changed() || sum.Unchanged[cdm.TableConditions] != 60 || s.Generation() != 1 {
		t.Fatalf("re-import changed something: %+v", sum)
	}
	if !reflect.DeepEqual(dump(s.Tables()), before) {
		t.Fatal("re-import changed the tables")
	}

	// A changed condition and a changed patient replace the old versions.
	ch := &cdm.Records{
		Patients:   []cdm.Patient{{ID: "ap3", BirthDate: cdm.DateFromYMD(1990, 5, 5), Sex: cdm.SexOther, Region: "NEW", DeathDate: cdm.NoDate}},
		Conditions: []cdm.Condition{{ID: "ac0-0", PatientID: "ap0", Code: "44054006", System: cdm.SystemSNOMED, Onset: cdm.DateFromYMD(2022, 2, 2), Abatement: cdm.NoDate}},
	}
	sum, err = s.ImportRecords(ctx, ch, "change")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Replaced[cdm.TableConditions] != 1 || sum.Replaced[cdm.TablePatients] != 1 || sum.Generation != 2 {
		t.Fatalf("summary %+v", sum)
	}
	after := dump(s.Tables())
	if got := rowCounts(s.Tables()); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows after replace %v, want %v", got, want)
	}
	if !contains(after[cdm.TableConditions], "ap0|44054006|"+cdm.SystemSNOMED+"|2022-02-02|") ||
		contains(after[cdm.TableConditions], "ap0|1000|"+cdm.SystemSNOMED+"|2020-01-01|") {
		t.Fatalf("condition not replaced: %v", after[cdm.TableConditions][:3])
	}
	if !contains(after[cdm.TablePatients], "ap3|1990-05-05|other|NEW|") {
		t.Fatal("patient not replaced")
	}

	// Reopen: same content, superseded versions gone.
	db.Close()
	s, db = openStore(t, dir)
	defer db.Close()
	if !reflect.DeepEqual(dump(s.Tables()), after) {
		t.Fatal("reopened store differs")
	}
	if n := countKeys(t, db); n != r.Len() {
		t.Fatalf("%d record keys stored, want %d (superseded versions left)", n, r.Len())
	}
	log, err := s.ImportLog()
	if err != nil || len(log) != 2 || log[1].Source != "change" {
		t.Fatalf("import log %v %v", log, err)
	}
}

func contains(rows []string, row string) bool {
	for _, r := range rows {
		if r == row {
			return true
		}
	}
	return false
}

func countKeys(t testing.TB, db *kv.DB) int {
	n := 0
	if err := db.View(func(tx *kv.Txn) error {
		return tx.IterateKeys(prefixRecords, func([]byte) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUnknownPatientWritesNothing(t *testing.T) {
	s, db := openStore(t, t.TempDir())
	defer db.Close()
	ctx := context.Background()
	if _, err := s.ImportRecords(ctx, synth("a", 3, 1), "base"); err != nil {
		t.Fatal(err)
	}
	before := dump(s.Tables())
	r := synth("b", 2, 1)
	r.Conditions = append(r.Conditions, cdm.Condition{ID: "x", PatientID: "nobody", Code: "1", System: "s", Onset: cdm.NoDate, Abatement: cdm.NoDate})
	// A record naming a stored patient is fine.
	r.Conditions = append(r.Conditions, cdm.Condition{ID: "y", PatientID: "ap0", Code: "1", System: "s", Onset: cdm.NoDate, Abatement: cdm.NoDate})
	_, err := s.ImportRecords(ctx, r, "bad")
	if !errors.Is(err, cdm.ErrUnknownPatient) || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("err = %v", err)
	}
	if !reflect.DeepEqual(dump(s.Tables()), before) || s.Generation() != 1 {
		t.Fatal("store changed")
	}
	r.Conditions = r.Conditions[:len(r.Conditions)-2]
	r.Conditions = append(r.Conditions, cdm.Condition{ID: "y", PatientID: "ap0", Code: "1", System: "s", Onset: cdm.NoDate, Abatement: cdm.NoDate})
	if _, err := s.ImportRecords(ctx, r, "good"); err != nil {
		t.Fatal(err)
	}
}

func TestCancelledImportLeavesNothing(t *testing.T) {
	s, db := openStore(t, t.TempDir())
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.ImportRecords(ctx, synth("a", 50, 100), "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if n := countKeys(t, db); n != 0 || s.Tables().NumPatients() != 0 {
		t.Fatalf("%d keys left", n)
	}
}

const killEnv = "FEDSTAT_STORE_KILL_CHILD"

// TestKillChild is the child of TestSIGKILLMidImport: it imports a big input
// and prints progress until it is killed.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killEnv)
	if dir == "" {
		t.Skip("child process of TestSIGKILLMidImport")
	}
	db, err := kv.Open(kv.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(context.Background(), db, logger)
	if err != nil {
		t.Fatal(err)
	}
	s.ProgressEvery = 20000
	r := synth("k", 2500, 100)
	fmt.Println("child: importing")
	if _, err := s.ImportRecords(context.Background(), r, "big"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("child: committed")
	time.Sleep(time.Minute)
}

func TestSIGKILLMidImport(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	s, db := openStore(t, dir)
	if _, err := s.ImportRecords(context.Background(), synth("a", 30, 2), "base"); err != nil {
		t.Fatal(err)
	}
	before := dump(s.Tables())
	keys := countKeys(t, db)
	db.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), killEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	staged := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "child: committed") {
			t.Fatal("child committed before it was killed; make the input bigger")
		}
		if strings.Contains(line, "store: staging") {
			// Let some batches reach the disk (Badger commits a write
			// batch every ~100k entries), then kill.
			if staged++; staged == 10 {
				time.Sleep(100 * time.Millisecond)
				break
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if staged < 10 {
		t.Fatalf("child ended before staging (saw %d progress lines)", staged)
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
	if !strings.Contains(logs.String(), "removed versions left by an interrupted") {
		t.Errorf("no keys of the killed import were on disk; the test did not exercise recovery:\n%s", logs.String())
	}
	t.Logf("recovery: %s", strings.TrimSpace(logs.String()))
	if !reflect.DeepEqual(dump(s.Tables()), before) {
		t.Fatal("store changed by a killed import")
	}
	if n := countKeys(t, db); n != keys {
		t.Fatalf("%d record keys after recovery, want %d", n, keys)
	}
	if s.Generation() != 1 {
		t.Fatalf("generation %d", s.Generation())
	}
	// The store still takes imports.
	if _, err := s.ImportRecords(context.Background(), synth("b", 5, 1), "after"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReaders(t *testing.T) {
	s, db := openStore(t, t.TempDir())
	defer db.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5 {
			if _, err := s.ImportRecords(context.Background(), synth(fmt.Sprint("g", i), 10, 2), "x"); err != nil {
				t.Error(err)
			}
		}
	}()
	for {
		select {
		case <-done:
			if got := s.Tables().NumPatients(); got != 50 {
				t.Fatalf("patients %d", got)
			}
			return
		default:
			tb := s.Tables()
			c, _ := tb.Table(cdm.TableConditions)
			if c.Rows != 2*tb.NumPatients() {
				t.Fatalf("inconsistent snapshot: %d conditions, %d patients", c.Rows, tb.NumPatients())
			}
		}
	}
}

// TestIncrementalSnapshotMatchesRebuild checks that extending the snapshot
// after an additive import gives the same tables as a full load.
func TestIncrementalSnapshotMatchesRebuild(t *testing.T) {
	s, db := openStore(t, t.TempDir())
	defer db.Close()
	ctx := context.Background()
	steps := []*cdm.Records{synth("a", 10, 2), synth("b", 5, 3), {
		Conditions:   []cdm.Condition{{ID: "late", PatientID: "ap1", Code: "new-code", System: "sys2", Onset: 1, Abatement: cdm.NoDate}},
		Observations: []cdm.Observation{{ID: "late-o", PatientID: "bp4", Code: "x", System: "y", Date: 3, Value: 1, HasValue: true, Unit: "u"}},
	}}
	for i, r := range steps {
		if _, err := s.ImportRecords(ctx, r, fmt.Sprint("step", i)); err != nil {
			t.Fatal(err)
		}
		full, _, err := s.load(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := dump(s.Tables()), dump(full); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: incremental snapshot differs from a full load:\n got %v\nwant %v", i, got, want)
		}
		if _, ok := s.Tables().PatientIndex("bp4"); i > 0 && !ok {
			t.Fatal("new patient not indexed")
		}
	}
}

// TestDataVersion: the data version changes with every import that changes
// the data and at every reopening, and never comes back; it stays while
// nothing changes.
func TestDataVersion(t *testing.T) {
	dir := t.TempDir()
	s, db := openStore(t, dir)
	ctx := context.Background()
	seen := map[string]bool{}
	see := func(what string) string {
		t.Helper()
		v := s.DataVersion()
		if seen[v] {
			t.Fatalf("%s: data version %s came back", what, v)
		}
		seen[v] = true
		return v
	}
	v0 := see("empty store")
	if s.DataVersion() != v0 {
		t.Fatal("the version changed without a change of the data")
	}
	if _, err := s.ImportRecords(ctx, synth("a", 20, 3), "first"); err != nil {
		t.Fatal(err)
	}
	see("after an import")
	db.Close()
	s, db = openStore(t, dir)
	defer db.Close()
	see("after reopening")
	if _, err := s.ImportRecords(ctx, synth("b", 5, 2), "second"); err != nil {
		t.Fatal(err)
	}
	see("after a second import")
}
