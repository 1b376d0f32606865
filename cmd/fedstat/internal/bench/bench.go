// Package bench measures fedstat end to end: a coordinator and N in-process
// nodes speaking real gRPC with mutual TLS on loopback, P synthetic patients
// per node, three query shapes, each run encrypted (the product path) and
// in the benchmark-only plaintext mode, so that the cost of encryption is a
// ratio.
//
// To fit N nodes of P patients in one process, every node serves the same
// generated data (read-only, shared in memory); each node still evaluates,
// noises, encrypts and signs on its own, so the work per node is real.
package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// Query is one benchmarked query shape.
type Query struct {
	Name string
	SQL  string
}

// Queries are the benchmarked shapes: a cohort count, a weekly-by-region
// count over a year, and a mean.
var Queries = []Query{
	{"cohort", "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'"},
	{"weekly-by-region", "SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '6142004' AND onset_date BETWEEN '2022-01-01' AND '2022-12-31' GROUP BY week, region"},
	{"mean", "SELECT AVG(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4'"},
}

// Options configure a run.
type Options struct {
	// Nodes and Patients (per node). Required.
	Nodes, Patients int
	// Repeats is the number of timed runs per query and mode. Defaults to 20.
	Repeats int
	// Queries defaults to all of Queries.
	Queries []Query
	// Seed of the synthetic data. Defaults to 1.
	Seed int64
	// Committee is K, the size of the decryption committee: the members
	// that hold the key, T = max(2, 2K/3) of whom decrypt each release.
	// Defaults to min(Nodes, 10); -1 puts every node on it.
	Committee int
	// Threshold is T; 0 (the default) takes max(2, 2K/3). With T = K the
	// decryptors key-switch with their CKG secrets and prove their shares.
	Threshold int
	// Compact runs compact releases: the decryptors get the sum of the
	// partials, not the partials, and verify no proof of encryption (the
	// cost of the proofs shows against the default). Defaults to false.
	Compact bool
	// Progress, when set, is told what is happening.
	Progress func(string)
	// Rows, when > 0, makes every node serve one node's data of Rows
	// condition rows on the embedded column store (BulkData: a bulk
	// import into a data directory, columns mapped from disk) instead of
	// Patients generated patients; Patients is then Rows/RowsPerPatient
	// and the default queries are those on conditions. Defaults to 0.
	Rows int
	// DataDir is the data directory of a Rows run, which must be empty or
	// absent and is kept. Defaults to a temporary directory, removed at
	// the end.
	DataDir string
}

// withDefaults checks o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Rows > 0 {
		o.Patients = max(o.Rows/RowsPerPatient, 1000)
		if len(o.Queries) == 0 {
			o.Queries = Queries[:2] // no observations in BulkData
		}
	}
	if o.Nodes < 2 || o.Patients < 1 {
		return o, fmt.Errorf("bench: need at least 2 nodes and 1 patient, got %d and %d", o.Nodes, o.Patients)
	}
	if o.Repeats == 0 {
		o.Repeats = 20
	}
	if len(o.Queries) == 0 {
		o.Queries = Queries
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	switch {
	case o.Committee == 0:
		o.Committee = min(o.Nodes, 10)
	case o.Committee < 0 || o.Committee > o.Nodes:
		o.Committee = o.Nodes
	}
	return o, nil
}

// threshold is T of the benchmark: two thirds of the committee, at least 2.
func (o Options) threshold() int {
	if o.Threshold > 0 {
		return min(o.Threshold, o.Committee)
	}
	return max(2, o.Committee*2/3)
}

// say tells o.Progress, when set.
func (o Options) say(f string, a ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(f, a...))
	}
}

// Cell is the result of one query shape at one (nodes, patients) size.
type Cell struct {
	Query    string `json:"query"`
	Nodes    int    `json:"nodes"`
	Patients int    `json:"patients"`
	// Rows is the condition rows per node of a Rows run (0: otherwise).
	Rows int `json:"rows,omitempty"`
	// PeakRSSMiB is the process's peak resident set size at the end of
	// the run (Linux), mapped column pages included.
	PeakRSSMiB int64 `json:"peak_rss_mib,omitempty"`
	// Slots is the length of each node's partial vector.
	Slots int `json:"slots"`
	// End-to-end latency (submit to released result, at the analyst).
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	// The same in the benchmark-only plaintext mode, and the ratio of the
	// medians.
	PlaintextP50Ms float64 `json:"plaintext_p50_ms"`
	PlaintextP95Ms float64 `json:"plaintext_p95_ms"`
	Ratio          float64 `json:"encrypted_over_plaintext"`
	// UploadBytesPerNode is the mean protobuf size of what one node sends
	// per query: its signed partial, plus its key-switch share when it is a
	// decryptor (averaged over all nodes).
	UploadBytesPerNode int64 `json:"upload_bytes_per_node"`
	// NodeMs is the mean time a node took to answer (evaluate, noise,
	// encrypt, sign, as the coordinator saw it, transfer included).
	NodeMs float64 `json:"node_ms"`
	// CoordinatorMs is the time of the coordinator-only phases: adding the
	// partials, combining the key-switch shares, decrypting and releasing.
	CoordinatorMs float64 `json:"coordinator_ms"`
	// CPUMsPerQuery is the whole process's CPU time per query: all nodes
	// and the coordinator (they share one process).
	CPUMsPerQuery float64 `json:"cpu_ms_per_query"`
	// Committee and Threshold are K and T of the key epoch.
	Committee int `json:"committee"`
	Threshold int `json:"threshold"`
	// CeremonyMs is the key ceremony's wall time; CeremonySentPerNode the
	// most bytes one node off the committee sent in it (its KeyGen
	// answer, empty) plus received (the KeyGen and InstallKey requests),
	// CeremonySentPerCommitteeMember the same for a committee member.
	CeremonyMs                      float64 `json:"ceremony_ms"`
	CeremonyBytesPerNode            int64   `json:"ceremony_bytes_per_node"`
	CeremonyBytesPerCommitteeMember int64   `json:"ceremony_bytes_per_committee_member"`
}

// Data makes the shared data of a P-patient node, streaming the generator
// into the columnar builder.
func Data(patients int, seed int64) (*cdm.Tables, error) {
	b := cdm.NewBuilder()
	err := synth.GenerateFunc(synth.Options{Patients: patients, Seed: seed}, func(r *cdm.Records) error {
		b.AddRecords(r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b.Build(), nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS returns the process's peak resident set size in bytes.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

// Run measures every query at one size, encrypted and in plaintext mode.
func Run(ctx context.Context, o Options) ([]Cell, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	say := o.say
	t0 := time.Now()
	var tables *cdm.Tables
	if o.Rows > 0 {
		var cleanup func()
		if tables, cleanup, err = bulkTables(ctx, o); err != nil {
			return nil, err
		}
		defer cleanup()
	} else if tables, err = Data(o.Patients, o.Seed); err != nil {
		return nil, err
	}
	runtime.GC()
	say("generated %d patients per node in %s", o.Patients, time.Since(t0).Round(time.Millisecond))

	cells := make([]Cell, len(o.Queries))
	for i, q := range o.Queries {
		cells[i] = Cell{Query: q.Name, Nodes: o.Nodes, Patients: o.Patients, Rows: o.Rows}
	}
	defer func() {
		for i := range cells {
			cells[i].PeakRSSMiB = peakRSS() >> 20
		}
	}()
	for _, plaintext := range []bool{false, true} {
		mode := "encrypted"
		if plaintext {
			mode = "plaintext"
		}
		t0 = time.Now()
		threshold := o.threshold()
		nw, err := demo.Start(ctx, demo.Options{Shared: tables, NodeCount: o.Nodes, Threshold: threshold, Committee: o.Committee, MinNodes: o.Nodes,
			BenchmarkPlaintext: plaintext, CompactRelease: o.Compact, Budget: node.Budget{TotalRho: math.Inf(1), PerAnalystRho: math.Inf(1)}})
		if err != nil {
			return nil, err
		}
		say("%s network of %d nodes up in %s (committee %d, threshold %d)", mode, o.Nodes, time.Since(t0).Round(time.Millisecond), o.Committee, threshold)
		if !plaintext {
			cc := nw.Coordinator.LastCeremony()
			say("key ceremony: %s; a committee member sent %s and received %s, another node sent %s and received %s",
				cc.Duration.Round(time.Millisecond), kib(cc.CommitteeSent), kib(cc.CommitteeReceived), kib(cc.MemberSent), kib(cc.MemberReceived))
			for i := range cells {
				cells[i].Committee, cells[i].Threshold = cc.Committee, cc.Threshold
				cells[i].CeremonyMs = float64(cc.Duration.Microseconds()) / 1000
				cells[i].CeremonyBytesPerNode = cc.MemberSent + cc.MemberReceived
				cells[i].CeremonyBytesPerCommitteeMember = cc.CommitteeSent + cc.CommitteeReceived
			}
		}
		// As the network operator: per-node timings reach operators only.
		c, err := nw.Dial(nw.Operator)
		if err != nil {
			nw.Close()
			return nil, err
		}
		for i, q := range o.Queries {
			var lat []float64
			var upload int64
			var nodeMs, coordMs float64
			cpu0 := cpuTime()
			for r := range o.Repeats + 2 {
				start := time.Now()
				st, err := c.Run(ctx, &typesv1.QuerySpec{Sql: q.SQL, Epsilon: 1, Delta: 1e-6}, client.RunOptions{Fresh: true}) // a repeat must cost what a query costs
				if err != nil {
					c.Close()
					nw.Close()
					return nil, fmt.Errorf("bench: %s (%s): %w", q.Name, mode, err)
				}
				if r < 2 { // warm-up
					if r == 1 {
						cpu0 = cpuTime()
					}
					continue
				}
				lat = append(lat, float64(time.Since(start).Microseconds())/1000)
				upload += uploadBytes(st)
				nodeMs += meanNodeMs(st)
				coordMs += coordinatorMs(st)
				if cells[i].Slots == 0 && st.GetResult() != nil {
					cells[i].Slots = slotsOf(st)
				}
			}
			cpu := float64((cpuTime() - cpu0).Microseconds()) / 1000 / float64(o.Repeats)
			p50, p95 := percentile(lat, 50), percentile(lat, 95)
			if plaintext {
				cells[i].PlaintextP50Ms, cells[i].PlaintextP95Ms = p50, p95
			} else {
				cells[i].P50Ms, cells[i].P95Ms = p50, p95
				cells[i].UploadBytesPerNode = upload / int64(o.Repeats) / int64(o.Nodes)
				cells[i].NodeMs = nodeMs / float64(o.Repeats)
				cells[i].CPUMsPerQuery = cpu
				cells[i].CoordinatorMs = coordMs / float64(o.Repeats)
			}
			say("%-17s %-9s p50 %7.1f ms  p95 %7.1f ms", q.Name, mode, p50, p95)
		}
		c.Close()
		nw.Close()
	}
	for i := range cells {
		if cells[i].PlaintextP50Ms > 0 {
			cells[i].Ratio = cells[i].P50Ms / cells[i].PlaintextP50Ms
		}
	}
	return cells, nil
}

func uploadBytes(st *coordinatorv1.QueryStatus) int64 {
	var n int64
	for _, p := range st.Nodes {
		n += p.UploadBytes
	}
	return n
}

func meanNodeMs(st *coordinatorv1.QueryStatus) float64 {
	var sum float64
	for _, p := range st.Nodes {
		sum += p.ElapsedMs
	}
	return sum / float64(max(1, len(st.Nodes)))
}

func coordinatorMs(st *coordinatorv1.QueryStatus) float64 {
	var sum float64
	for _, p := range st.Phases {
		if p.Name == "aggregate" || p.Name == "decrypt+release" {
			sum += p.ElapsedMs
		}
	}
	return sum
}

func slotsOf(st *coordinatorv1.QueryStatus) int {
	r := st.GetResult()
	n := 0
	for _, row := range r.GetRows() {
		n += len(row.GetValues())
	}
	return n
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// kib formats a byte count for progress lines.
func kib(n int64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(n)/1024)
}
