package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/node/admin"
)

// RowsPerPatient is the number of condition rows per patient of a node
// made by BulkData.
const RowsPerPatient = 100

// BulkData makes a node with rows condition rows on the embedded column
// store (a bulk import, node/internal/store) in the data directory dir:
// rows/RowsPerPatient patients (at least 1,000) imported as usual, then the
// conditions generated and streamed in chunks, so that memory does not
// grow with rows. Codes are skewed (the cohort code 44054006 on about a
// quarter of the rows, the weekly query's 6142004 on about a sixteenth),
// onset dates spread over 2020-2023. The returned tables stay valid after
// the data directory is closed (their columns are mapped from its files);
// the directory must outlive them.
func BulkData(ctx context.Context, dir string, rows int, seed int64, say func(string, ...any)) (*cdm.Tables, error) {
	np := max(rows/RowsPerPatient, 1000)
	s, db, err := admin.OpenStore(ctx, admin.OpenOptions{DataDir: dir})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	pats := &cdm.Records{Patients: make([]cdm.Patient, np)}
	for i := range np {
		h := mix(uint64(i) ^ uint64(seed)<<32)
		pats.Patients[i] = cdm.Patient{ID: "p" + strconv.Itoa(i), BirthDate: cdm.DateFromYMD(1930+int(h%80), 1, 1) + cdm.Date(h>>8%365),
			Sex: cdm.Sex(1 + h>>20%2), Region: synth.DefaultRegions[h>>24%uint64(len(synth.DefaultRegions))], DeathDate: cdm.NoDate}
	}
	t0 := time.Now()
	if err := admin.ImportRecordsIn(ctx, s, pats, "bench patients"); err != nil {
		return nil, err
	}
	say("stored %d patients in %s", np, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	g := &condGen{n: rows, np: np, seed: uint64(seed)}
	if _, err := admin.ImportBulkIn(ctx, s, g.next, "bench conditions"); err != nil {
		return nil, err
	}
	say("bulk-imported %d condition rows in %s (peak RSS so far %d MiB)", rows, time.Since(t0).Round(time.Millisecond), peakRSS()>>20)
	return s.Tables(), nil
}

// condGen generates condition rows in chunks, reusing one chunk.
type condGen struct {
	n, np, done int
	seed        uint64
	r           cdm.Records
}

// codes by frequency: code k is drawn about twice as often as code k+1.
var bulkCodes = [...]string{"38341003", "44054006", "195967001", "6142004", "840539006", "73211009", "10509002", "444814009", "233604007", "68496003"}

func (g *condGen) next(ctx context.Context) (*cdm.Records, error) {
	if g.done >= g.n {
		return nil, io.EOF
	}
	const chunk = 65536
	g.r.Conditions = g.r.Conditions[:0]
	start := cdm.DateFromYMD(2020, 1, 1)
	for i := g.done; i < min(g.done+chunk, g.n); i++ {
		h := mix(uint64(i) ^ g.seed<<40)
		k := 0
		for x := h >> 32; x&1 == 1 && k < len(bulkCodes)-1; x >>= 1 {
			k++
		}
		g.r.Conditions = append(g.r.Conditions, cdm.Condition{ID: "c" + strconv.Itoa(i), PatientID: "p" + strconv.Itoa(int(h%uint64(g.np))),
			Code: bulkCodes[k], System: cdm.SystemSNOMED, Onset: start + cdm.Date(h>>12%1461), Abatement: cdm.NoDate})
	}
	g.done += chunk
	return &g.r, nil
}

// mix is splitmix64's finaliser: a cheap deterministic hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// bulkTables returns the shared data of a --rows run: BulkData in
// o.DataDir, or in a temporary directory removed by the returned cleanup.
func bulkTables(ctx context.Context, o Options) (*cdm.Tables, func(), error) {
	dir, cleanup := o.DataDir, func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "fedstat-bench-rows-")
		if err != nil {
			return nil, nil, err
		}
		dir, cleanup = d, func() { os.RemoveAll(d) }
	} else if _, err := os.Stat(dir); err == nil {
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			return nil, nil, fmt.Errorf("bench: --data-dir %s is not empty", dir)
		}
	}
	t, err := BulkData(ctx, dir, o.Rows, o.Seed, o.say)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return t, cleanup, nil
}
