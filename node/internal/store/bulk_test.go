package store

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/queries/plan"
)

// chunks is a RecordSource over records split into chunks of n records
// per table; fail, when set, is returned instead of the chunk numbered
// failAt.
type chunks struct {
	parts  []*cdm.Records
	i      int
	failAt int
	fail   error
}

func chunked(r *cdm.Records, n int) *chunks {
	c := &chunks{failAt: -1}
	for start := 0; ; start += n {
		part, any := &cdm.Records{}, false
		for ti := range cdm.Schema {
			t := &cdm.Schema[ti]
			row := t.NewRow()
			for i := start; i < min(start+n, t.Len(r)); i++ {
				t.Row(r, i, row)
				t.AddRow(part, row)
				any = true
			}
		}
		if !any {
			return c
		}
		c.parts = append(c.parts, part)
	}
}

func (c *chunks) Next(ctx context.Context) (*cdm.Records, error) {
	if c.i == c.failAt {
		return nil, c.fail
	}
	if c.i >= len(c.parts) {
		return nil, io.EOF
	}
	c.i++
	return c.parts[c.i-1], nil
}

// split returns r's patients and the rest.
func split(r *cdm.Records) (patients, rest *cdm.Records) {
	rest = &cdm.Records{}
	*rest = *r
	rest.Patients = nil
	return &cdm.Records{Patients: r.Patients}, rest
}

func openBulk(t testing.TB, dir string) (*Store, *kv.DB) {
	t.Helper()
	db, err := kv.Open(kv.Options{Dir: filepath.Join(dir, "kv")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenWith(context.Background(), db, Options{ColumnDir: filepath.Join(dir, "columns")})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return s, db
}

// keyedOnly returns an in-memory store holding the records of all rs as
// keyed records: the reference a bulk store must answer like.
func keyedOnly(t *testing.T, rs ...*cdm.Records) *cdm.Tables {
	t.Helper()
	db, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if _, err := s.ImportRecords(context.Background(), r, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	return s.Tables()
}

var bulkQueries = []string{
	"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '1003'",
	"SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code IN ('1001', '1007') GROUP BY region",
	"SELECT AVG(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4'",
	"SELECT sex, COUNT(*) FROM encounters GROUP BY sex",
}

// answers evaluates bulkQueries on t.
func answers(t *testing.T, tables *cdm.Tables) [][]float64 {
	t.Helper()
	cat := &plan.Catalogue{Regions: []string{"R0", "R1", "R2", "R3", "R4"}}
	var out [][]float64
	for _, sql := range bulkQueries {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, cat)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		s := &Store{}
		s.view.Store(tables)
		e, err := s.Evaluate(context.Background(), p)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		out = append(out, e.Values())
	}
	return out
}

func sameData(t *testing.T, got, want *cdm.Tables) {
	t.Helper()
	if g, w := dump(got), dump(want); !reflect.DeepEqual(g, w) {
		for name := range w {
			if !reflect.DeepEqual(g[name], w[name]) {
				t.Errorf("table %s: %d rows, want %d", name, len(g[name]), len(w[name]))
			}
		}
		t.Fatal("bulk store differs from the keyed reference")
	}
	g, w := answers(t, got), answers(t, want)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("answers %v, want %v", g, w)
	}
}

// TestBulkMatchesKeyed: a bulk import is mapped from disk (not the heap),
// gives the data and query answers of the same records imported keyed,
// survives a reopen (finding its column directory by itself), and changes
// nothing when imported again.
func TestBulkMatchesKeyed(t *testing.T) {
	dir := t.TempDir()
	r := synth("x", 300, 7)
	pats, rest := split(r)
	s, db := openBulk(t, dir)
	if _, err := s.ImportRecords(context.Background(), pats, "patients"); err != nil {
		t.Fatal(err)
	}
	sum, err := s.ImportBulk(context.Background(), chunked(rest, 250), "bulk")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Generation != 2 || sum.Added[cdm.TableConditions] != 2100 {
		t.Fatalf("summary %+v", sum)
	}
	want := keyedOnly(t, r)
	sameData(t, s.Tables(), want)
	if n := len(s.maps.regions); n == 0 {
		t.Fatal("no column is mapped")
	}

	sum, err = s.ImportBulk(context.Background(), chunked(rest, 100), "again")
	if err != nil || sum.Changed() || sum.Unchanged[cdm.TableConditions] != 2100 {
		t.Fatalf("reimport: %+v, %v", sum, err)
	}
	db.Close()

	// Reopened without naming the column directory: it is recorded.
	db, err = kv.Open(kv.Options{Dir: filepath.Join(dir, "kv")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameData(t, s.Tables(), want)
	if segs := s.Segments(); len(segs) != 1 || segs[0].Rows[cdm.TableObservations] != 300 {
		t.Fatalf("segments %+v", segs)
	}
}

// TestBulkMerged: a table held in several parts (keyed records and two
// bulk imports) is merged into a view; keyed imports after a bulk import,
// new patients included, and a drop keep the data right, also after a
// reopen.
func TestBulkMerged(t *testing.T) {
	dir := t.TempDir()
	a, b, c := synth("a", 100, 3), synth("b", 80, 2), synth("c", 50, 4)
	s, db := openBulk(t, dir)
	defer func() { db.Close() }()
	ctx := context.Background()
	pa, ra := split(a)
	pb, rb := split(b)
	for _, r := range []*cdm.Records{pa, pb} {
		if _, err := s.ImportRecords(ctx, r, "patients"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ImportBulk(ctx, chunked(ra, 64), "a"); err != nil {
		t.Fatal(err)
	}
	sb, err := s.ImportBulk(ctx, chunked(rb, 64), "b")
	if err != nil {
		t.Fatal(err)
	}
	// Keyed, with new patients (whose indices follow the stored ones).
	if _, err := s.ImportRecords(ctx, c, "c"); err != nil {
		t.Fatal(err)
	}
	sameData(t, s.Tables(), keyedOnly(t, a, b, c))

	sum, err := s.DropBulk(ctx, sb.Generation)
	if err != nil || sum.Removed[cdm.TableConditions] != 160 {
		t.Fatalf("drop: %+v, %v", sum, err)
	}
	want := keyedOnly(t, a, pb, c)
	sameData(t, s.Tables(), want)
	if _, err := os.Stat(filepath.Join(dir, "columns", segDirName(sb.Generation))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dropped segment still on disk: %v", err)
	}
	if _, err := s.DropBulk(ctx, sb.Generation); !errors.Is(err, ErrNoSegment) {
		t.Fatalf("second drop: %v", err)
	}
	db.Close()
	s, db = openBulk(t, dir)
	sameData(t, s.Tables(), want)
	log, err := s.ImportLog()
	if err != nil || len(log) != 6 {
		t.Fatalf("log %d entries, %v", len(log), err)
	}
}

// TestBulkRefusals: a bulk import refused or failing part way leaves
// nothing visible and no files behind.
func TestBulkRefusals(t *testing.T) {
	dir := t.TempDir()
	s, db := openBulk(t, dir)
	defer db.Close()
	ctx := context.Background()
	r := synth("x", 50, 3)
	pats, rest := split(r)
	if _, err := s.ImportRecords(ctx, pats, "patients"); err != nil {
		t.Fatal(err)
	}
	before := dump(s.Tables())

	failing := chunked(rest, 20)
	failing.failAt, failing.fail = 3, errors.New("disk on fire")
	unknown := synth("nobody", 2, 2)
	unknown.Patients = nil
	killed, cancel := context.WithCancel(ctx)
	cancel()
	for name, tc := range map[string]struct {
		ctx  context.Context
		src  RecordSource
		want error
	}{
		"failing source":  {ctx, failing, nil},
		"unknown patient": {ctx, chunked(unknown, 10), ErrUnknownPatient},
		"patients":        {ctx, chunked(r, 10), ErrBulkPatients},
		"cancelled":       {killed, chunked(rest, 10), context.Canceled},
	} {
		_, err := s.ImportBulk(tc.ctx, tc.src, name)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if !reflect.DeepEqual(dump(s.Tables()), before) || s.Generation() != 1 {
		t.Fatal("a refused bulk import changed the store")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "columns"))
	if len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}

	// Without a column directory, bulk imports are refused.
	mem, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	ms, err := Open(ctx, mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.ImportBulk(ctx, chunked(rest, 10), "x"); !errors.Is(err, ErrNoColumnDir) {
		t.Fatalf("no column dir: %v", err)
	}
}

// TestBulkCrashLeftovers: what a bulk import killed before its commit can
// leave (a temporary directory, a renamed segment no manifest names) is
// removed at open and never seen; a committed segment whose files are
// damaged fails the open instead of answering wrongly.
func TestBulkCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	s, db := openBulk(t, dir)
	ctx := context.Background()
	r := synth("x", 40, 2)
	pats, rest := split(r)
	if _, err := s.ImportRecords(ctx, pats, "patients"); err != nil {
		t.Fatal(err)
	}
	sum, err := s.ImportBulk(ctx, chunked(rest, 30), "bulk")
	if err != nil {
		t.Fatal(err)
	}
	before := dump(s.Tables())
	db.Close()

	// A killed import: its segment fully written and renamed, but not
	// committed, and another one still in its temporary directory.
	cols := filepath.Join(dir, "columns")
	seg := filepath.Join(cols, segDirName(sum.Generation))
	if err := os.CopyFS(filepath.Join(cols, segDirName(sum.Generation+1)), os.DirFS(seg)); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(cols, "tmp-4-abc"), os.DirFS(seg)); err != nil {
		t.Fatal(err)
	}
	s, db = openBulk(t, dir)
	if !reflect.DeepEqual(dump(s.Tables()), before) || s.Generation() != sum.Generation {
		t.Fatal("leftovers of a killed bulk import are visible")
	}
	ents, _ := os.ReadDir(cols)
	if len(ents) != 1 || ents[0].Name() != segDirName(sum.Generation) {
		t.Fatalf("column directory after recovery: %v", ents)
	}
	// The next import takes the generation the killed one had.
	if _, err := s.ImportRecords(ctx, synth("y", 3, 1), "keyed"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// A truncated column file is refused at open.
	f := filepath.Join(seg, "conditions.onset_date.i32")
	if err := os.Truncate(f, 8); err != nil {
		t.Fatal(err)
	}
	db, err = kv.Open(kv.Options{Dir: filepath.Join(dir, "kv")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(ctx, db, nil); !errors.Is(err, errColumns) {
		t.Fatalf("open with a damaged column file: %v", err)
	}
}

// rowSource generates n condition rows over np patients (p0, p1, ...) in
// chunks, without holding more than one chunk.
type rowSource struct {
	n, np, next, chunk int
	r                  cdm.Records
}

func (g *rowSource) Next(ctx context.Context) (*cdm.Records, error) {
	if g.next >= g.n {
		return nil, io.EOF
	}
	codes := [...]string{"44054006", "38341003", "195967001", "840539006", "6142004", "73211009", "10509002", "444814009", "233604007", "68496003"}
	g.r.Conditions = g.r.Conditions[:0]
	for i := g.next; i < min(g.next+g.chunk, g.n); i++ {
		// Skewed codes: code k about twice as often as k+1.
		k := 0
		for x := uint32(i*2654435761) >> 22; x&1 == 1 && k < len(codes)-1; x >>= 1 {
			k++
		}
		g.r.Conditions = append(g.r.Conditions, cdm.Condition{ID: "c" + strconv.Itoa(i), PatientID: "p" + strconv.Itoa((i*7919)%g.np),
			Code: codes[k], System: cdm.SystemSNOMED, Onset: cdm.Date(15000 + i%3650), Abatement: cdm.NoDate})
	}
	g.next += g.chunk
	return &g.r, nil
}

func bulkPatients(np int) *cdm.Records {
	r := &cdm.Records{}
	for i := range np {
		r.Patients = append(r.Patients, cdm.Patient{ID: "p" + strconv.Itoa(i), BirthDate: cdm.Date(-10000 + i%30000), Sex: cdm.Sex(1 + i%2), Region: "R" + strconv.Itoa(i%50), DeathDate: cdm.NoDate})
	}
	return r
}

// rssAnon returns the process's resident anonymous memory (Linux; heap
// and stacks, not mapped files), or -1.
func rssAnon() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// TestBulkMemoryBound imports 2 million condition rows in bulk and checks
// that the process's anonymous memory grows by far less than the rows
// would take on the heap (a keyed import of them needs about 1.6 GB): the
// margin is generous, the point is that growth does not follow the rows.
func TestBulkMemoryBound(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("memory measurement (not under -race or -short)")
	}
	if rssAnon() < 0 {
		t.Skip("no /proc/self/status")
	}
	const rows, np = 2_000_000, 20_000
	s, db := openBulk(t, t.TempDir())
	defer db.Close()
	ctx := context.Background()
	if _, err := s.ImportRecords(ctx, bulkPatients(np), "patients"); err != nil {
		t.Fatal(err)
	}
	src := &rowSource{n: rows, np: np, chunk: 20_000}
	peak, _ := peakDuring(func() {
		if _, err := s.ImportBulk(ctx, src, "bulk"); err != nil {
			t.Fatal(err)
		}
	})
	c, _ := s.Tables().Table(cdm.TableConditions)
	if c.Rows != rows {
		t.Fatalf("%d rows", c.Rows)
	}
	t.Logf("anonymous memory grew by at most %d MiB importing %d rows", peak>>20, rows)
	if peak > 200<<20 {
		t.Fatalf("anonymous memory grew by %d MiB importing %d rows in bulk", peak>>20, rows)
	}
}

// peakDuring runs f and returns the largest growth of rssAnon seen while
// it ran (sampled every few milliseconds; before, the heap the runtime
// keeps but does not use is returned to the system, so that f cannot hide
// its growth in it) and that largest rssAnon.
func peakDuring(f func()) (growth, peak int64) {
	debug.FreeOSMemory()
	base := rssAnon()
	stop, done := make(chan struct{}), make(chan int64)
	go func() {
		var peak int64
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			peak = max(peak, rssAnon())
			select {
			case <-stop:
				done <- max(peak, rssAnon())
				return
			case <-tk.C:
			}
		}
	}()
	f()
	close(stop)
	peak = <-done
	return peak - base, peak
}
