// Package plan turns a parsed query and privacy parameters into a Plan: the
// public group domain, the per-patient contribution bounds, the sensitivity
// of every noisy vector, the noise each node adds and the privacy cost.
//
// Build is deterministic: the coordinator and every node build the same Plan
// from the same Request and Catalogue (no maps are iterated, nothing depends
// on data or time), so each node can check what it is asked to do.
//
// # Privacy math
//
// The privacy unit is the patient (add/remove one patient and all their rows).
// A query evaluates to one or more measures (noisy vectors over the C cells of
// the group domain): COUNT(*) rows, COUNT(DISTINCT patient_id) patients, and
// for SUM/AVG/STDDEV/VARIANCE the sums Σ(clamp(x)−c), Σ(clamp(x)−c)² and the
// count of non-missing x. Bounds:
//
//   - G, the groups one patient may contribute to: 1 when every group key is
//     a patient attribute (sex, region, age band), else min(max_groups, the
//     product of the row-level key domains). max_groups comes from the query
//     (WITH max_groups = g) or Catalogue.MaxGroupsPerPatient.
//   - R, the rows one patient may contribute to one cell: 1 on the patients
//     table, else WITH max_rows = r or Catalogue.MaxRowsPerPatient.
//   - A patient changes one cell by at most PerCell: 1 for COUNT(DISTINCT),
//     R for COUNT(*) and value counts, R·B for sums and R·B² for sums of
//     squares, B = max(|lo−c|, |hi−c|) with c = (lo+hi)/2 for AVG, STDDEV,
//     VARIANCE and c = 0 for SUM.
//   - L2 sensitivity of the vector Δ₂ = K·PerCell·√G; L1 Δ₁ = K·PerCell·G,
//     K = Catalogue.MaxNodesPerPatient, the number of nodes that may hold
//     records of one patient (the daemons' required max_nodes_per_patient).
//
// Gaussian (default, zCDP): the request's (ε, δ) becomes the budget
// ρ = (√(ln(1/δ)+ε) − √(ln(1/δ)))², the largest ρ with
// ε = ρ + 2√(ρ ln(1/δ)). Each of the k measures gets ρ/k and noise
// σ_j = Δ₂/√(2ρ/k), so Σ Δ₂²/(2σ_j²) = ρ. The release needs at least m
// partials and up to T−1 nodes may collude, so each node adds
// N(0, σ_j²/(m−T+1)): the m−T+1 honest partials alone carry variance σ_j².
//
// Laplace (pure ε-DP): each measure gets ε/k and Laplace noise of scale
// b = Δ₁·k/ε. A sum of Laplace variables is not Laplace, so every node adds
// a full Laplace(b): one honest node's noise suffices (post-processing), at
// the price of variance 2b² per contributing node. Its zCDP cost is ε²/2.
//
// Encoding: slot = round(Scale·value) + round(Scale·noise), Scale = 2^k a
// power of two chosen so that the quantum 1/Scale is at most a quarter of the
// node noise (counts: k ≥ 0; sums: also about 2^6 quanta per row bound). The
// rule matters: rounding happens at each node, before the sum, so a quantum
// as coarse as the node noise would round the distributed noise away (see
// Plan.encode). Release counts the rounding variance (1/12 quantum² per
// node) in the intervals.
package plan

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/parse"
	"github.com/fedstat/fedstat/queries/zcdp"
)

// Mechanisms.
const (
	Gaussian = "gaussian"
	Laplace  = "laplace"
)

// ErrRequest marks a bad Request or Catalogue (not a problem in the SQL text,
// which is a *parse.Error).
var ErrRequest = errors.New("plan: bad request")

// Request is what the analyst asks, with the network's privacy parameters.
type Request struct {
	SQL           string
	Epsilon       float64  // total for the query; Required > 0
	Delta         float64  // Required in (0,1) for Gaussian; ignored for Laplace
	Mechanism     string   // "gaussian" (default) or "laplace" (pure DP)
	MinNodes      int      // m: partials needed for a release. Required >= 1
	Threshold     int      // T: decryption threshold; up to T-1 nodes may collude. Required 1 <= T <= m
	ReferenceDate cdm.Date // date at which `age` is computed; Required
	// PartialLimit is the largest |slot| one partial may hold so that a sum
	// over every member fits the plaintext range (the coordinator sets it to
	// the range divided by the members). Each measure's encoding grid is
	// chosen within it (see Plan.encode). Defaults to DefaultPartialLimit.
	PartialLimit int64
	// LinkHolders is, for a linked query (Catalogue.Linkage), the number of
	// nodes that hold the outer table (the coordinator counts them from the
	// nodes' announcements and every node must be given the same number).
	// The payload's K is LinkHolders (Catalogue.MaxNodesPerPatient when 0).
	// Defaults to 0: unknown, K = Catalogue.MaxNodesPerPatient.
	LinkHolders int
}

// DefaultPartialLimit is Request.PartialLimit's default: 2^34, so that 32
// partials fit the 2^39 plaintext range of the production parameters.
const DefaultPartialLimit = 1 << 34

// Catalogue is the public description of the network that planning may use.
// Zero fields take their defaults in Build.
type Catalogue struct {
	// Regions is the public list of regions (the GROUP BY region domain).
	// Defaults to none: GROUP BY region is refused until the network lists
	// its regions. Rows whose region is not listed are never released.
	Regions []string
	// MaxGroupsPerPatient bounds the groups one patient contributes to when
	// the query gives no WITH max_groups. Defaults to 4.
	MaxGroupsPerPatient int
	// MaxRowsPerPatient bounds the rows one patient contributes to one group
	// (COUNT(*), SUM, AVG...) when the query gives no WITH max_rows.
	// Defaults to 5.
	MaxRowsPerPatient int
	// MaxPatientsPerNode is the largest number of patients a node may hold;
	// it bounds the magnitude of a partial (MaxAbsPartial), and eval refuses
	// to run on more. Defaults to 10,000,000.
	MaxPatientsPerNode int
	// SmallCountThreshold k: released counts below k display as "< k" (free
	// post-processing). Defaults to 10; negative disables.
	SmallCountThreshold int
	// MaxAge is where age bands stop: the last band is open ("110+").
	// Defaults to 110.
	MaxAge int
	// MaxSlots bounds VectorLen (cells × measures). Defaults to 65,536.
	MaxSlots int
	// MaxNodesPerPatient is how many nodes may hold records of the same
	// patient (e.g. a hospital and an insurer). Each node bounds a patient's
	// contribution on its own, so the sensitivities are multiplied by it
	// (triangle inequality) and the zCDP cost of a given noise by its
	// square. Defaults to 1 (each patient's records live at exactly one
	// node), a default for tests and single-source data only: if patients
	// span K nodes and this says 1, every release is under-noised by a
	// factor K. The daemons take it from the required config key
	// max_nodes_per_patient and never use the default.
	MaxNodesPerPatient int
	// Studies are the public schemas of the network's study tables
	// (research data sets that nodes import from CSV). Queries may read a
	// study by its name like a CDM table. Defaults to none.
	Studies []cdm.StudySchema
	// ValueSets are the network's named value sets (internal/terminology),
	// which queries match as `code IN VALUESET 'name'`. Defaults to none.
	ValueSets []terminology.ValueSet
	// Linkage makes the network a linked one: patient_id means the resident
	// that nodes recognise by an identifier (see Linkage and Plan.Link).
	// Defaults to nil: no linkage, patient_id is each node's own patient.
	Linkage *Linkage
}

// CodeNames maps every code the catalogue's value sets name to its display
// name (the first value set, in name order, that gives one wins), for
// showing codes with their names. Empty without value sets.
func (c *Catalogue) CodeNames() map[string]string {
	names := map[string]string{}
	for i := range c.ValueSets {
		for code, n := range c.ValueSets[i].Names() {
			if _, ok := names[code]; !ok {
				names[code] = n
			}
		}
	}
	return names
}

// ValueSet returns the catalogue's value set called name (case-insensitive).
func (c *Catalogue) ValueSet(name string) (*terminology.ValueSet, bool) {
	for i := range c.ValueSets {
		if strings.EqualFold(c.ValueSets[i].Name, name) {
			return &c.ValueSets[i], true
		}
	}
	return nil, false
}

// DefaultCatalogue returns a catalogue with every default filled in and no
// regions. It assumes MaxNodesPerPatient = 1: each patient's records at
// exactly one node. A network where patients may be at several nodes must
// set MaxNodesPerPatient (the daemons' max_nodes_per_patient) or its
// releases are under-noised.
func DefaultCatalogue() *Catalogue {
	c := &Catalogue{}
	c.fill()
	return c
}

func (c *Catalogue) fill() {
	if c.MaxGroupsPerPatient == 0 {
		c.MaxGroupsPerPatient = 4
	}
	if c.MaxRowsPerPatient == 0 {
		c.MaxRowsPerPatient = 5
	}
	if c.MaxPatientsPerNode == 0 {
		c.MaxPatientsPerNode = 10_000_000
	}
	if c.SmallCountThreshold == 0 {
		c.SmallCountThreshold = 10
	}
	if c.SmallCountThreshold < 0 {
		c.SmallCountThreshold = 0
	}
	if c.MaxAge == 0 {
		c.MaxAge = 110
	}
	if c.MaxSlots == 0 {
		c.MaxSlots = 65536
	}
	if c.MaxNodesPerPatient == 0 {
		c.MaxNodesPerPatient = 1
	}
}

// Plan is a validated, immutable query plan. All methods are safe for
// concurrent use. Slices returned by accessors are copies; the Pred and Value
// trees they point to are shared and must not be modified.
type Plan struct {
	// fingerprint is Fingerprint, computed once.
	fingerprint struct {
		once sync.Once
		v    string
	}
	req       Request
	mech      string
	table     string
	where     Pred
	keys      []Key
	cells     int
	measures  []Measure
	outputs   []Output
	groups    int // G
	rows      int // R
	groupsSrc string
	rowsSrc   string
	nodesPer  int // Catalogue.MaxNodesPerPatient
	rho       float64
	honest    int // m - T + 1
	maxPat    int
	smallK    int
	normSQL   string
	// studyDomain marks keys whose domain is a study schema's value list.
	studyDomain map[string]bool
	// valueSets maps each value set the query uses to its digest (for the
	// fingerprint: a node that expands a name differently refuses).
	valueSets map[string]string
	// Link is the linked part of a linked query in a network with record
	// linkage (Catalogue.Linkage); nil for every other plan. Read-only, like
	// the rest of the plan.
	Link *LinkPlan
	// linkOuterText and linkFilterText are the SQL of Link's conditions,
	// for Describe and Fingerprint.
	linkOuterText  string
	linkFilterText []string
}

// Build validates req against cat (nil: DefaultCatalogue) and plans the
// query. Errors that point into the SQL are *parse.Error (wrapping
// parse.ErrSyntax, parse.ErrUnknownName or parse.ErrInvalid); bad privacy
// parameters wrap ErrRequest. Build is deterministic.
func Build(req Request, cat *Catalogue) (*Plan, error) {
	var c Catalogue
	if cat != nil {
		c = *cat
	}
	c.fill()
	mech := req.Mechanism
	if mech == "" {
		mech = Gaussian
	}
	switch {
	case mech != Gaussian && mech != Laplace:
		return nil, fmt.Errorf("%w: mechanism %q: want %q or %q", ErrRequest, req.Mechanism, Gaussian, Laplace)
	case !(req.Epsilon > 0) || math.IsInf(req.Epsilon, 0):
		return nil, fmt.Errorf("%w: epsilon must be a positive number, got %v", ErrRequest, req.Epsilon)
	case mech == Gaussian && !(req.Delta > 0 && req.Delta < 1):
		return nil, fmt.Errorf("%w: delta must be in (0, 1) for the Gaussian mechanism, got %v", ErrRequest, req.Delta)
	case req.MinNodes < 1:
		return nil, fmt.Errorf("%w: min_nodes must be at least 1, got %d", ErrRequest, req.MinNodes)
	case req.Threshold < 1 || req.Threshold > req.MinNodes:
		return nil, fmt.Errorf("%w: threshold T must satisfy 1 <= T <= min_nodes (%d), got %d", ErrRequest, req.MinNodes, req.Threshold)
	case !req.ReferenceDate.Valid():
		return nil, fmt.Errorf("%w: reference date is required", ErrRequest)
	case req.PartialLimit < 0:
		return nil, fmt.Errorf("%w: partial limit must not be negative, got %d", ErrRequest, req.PartialLimit)
	case req.LinkHolders < 0:
		return nil, fmt.Errorf("%w: link holders must not be negative, got %d", ErrRequest, req.LinkHolders)
	case c.Linkage != nil && c.Linkage.IdentifierSystem == "":
		return nil, fmt.Errorf("%w: the catalogue's linkage needs an identifier system", ErrRequest)
	case c.MaxGroupsPerPatient < 1 || c.MaxRowsPerPatient < 1 || c.MaxPatientsPerNode < 1 || c.MaxAge < 1 || c.MaxSlots < 1 || c.MaxNodesPerPatient < 1:
		return nil, fmt.Errorf("%w: catalogue bounds must be positive", ErrRequest)
	}
	if mech == Laplace {
		req.Delta = 0
	}
	req.Mechanism = mech
	q, err := parse.Parse(req.SQL)
	if err != nil {
		return nil, err
	}
	b := &binder{src: req.SQL, cat: &c, ref: req.ReferenceDate}
	p := &Plan{req: req, mech: mech, honest: req.MinNodes - req.Threshold + 1, maxPat: c.MaxPatientsPerNode, smallK: c.SmallCountThreshold, nodesPer: c.MaxNodesPerPatient}
	if err := b.plan(q, p); err != nil {
		return nil, err
	}
	p.studyDomain = b.studyDomain
	p.valueSets = b.valueSets
	for i := range p.measures {
		p.measures[i].Nodes, p.measures[i].Groups = p.nodesPer, p.groups
	}
	if p.Link != nil {
		if mech != Gaussian {
			return nil, fmt.Errorf("%w: a linked query (resident counts and cohort filters in a network with record linkage) needs the %s mechanism: its padding and dummies are Gaussian", ErrRequest, Gaussian)
		}
		// The holders of the outer table, as the coordinator counted them
		// from the nodes' announcements (each node checks the count covers
		// every holder the link spec names); without a count, the
		// network's bound.
		p.Link.Holders = c.MaxNodesPerPatient
		if req.LinkHolders > 0 {
			p.Link.Holders = req.LinkHolders
		}
		p.linkMeasures()
	}
	if err := p.account(); err != nil {
		return nil, err
	}
	if n := p.VectorLen(); n > c.MaxSlots {
		return nil, parse.NewError(parse.ErrInvalid, req.SQL, q.Pos, "the result needs %d slots (%d cells × %d measures); the network allows %d: narrow the date range or the lists", n, p.cells, len(p.measures), c.MaxSlots)
	}
	p.normSQL = normalise(q)
	return p, nil
}

// account splits the budget over the measures and sets the noise.
func (p *Plan) account() error {
	k := float64(len(p.measures))
	switch p.mech {
	case Gaussian:
		p.rho = zcdp.RhoFromEpsilonDelta(p.req.Epsilon, p.req.Delta)
	case Laplace:
		p.rho = zcdp.PureRho(p.req.Epsilon)
	}
	rho := p.rho
	if p.Link != nil {
		rho = p.linkPadding(rho)
	}
	for i := range p.measures {
		m := &p.measures[i]
		kn, g := float64(m.Nodes), float64(m.Groups)
		m.L2 = kn * m.PerCell * math.Sqrt(g)
		m.L1 = kn * m.PerCell * g
		switch p.mech {
		case Gaussian:
			m.Rho = rho / k
			m.Sigma = zcdp.GaussianSigma(m.L2, m.Rho)
			m.NodeSigma = m.Sigma / math.Sqrt(float64(p.honest))
		case Laplace:
			m.Epsilon = p.req.Epsilon / k
			m.Rho = zcdp.PureRho(m.Epsilon)
			m.LaplaceB = m.L1 / m.Epsilon
			m.Sigma = math.Sqrt2 * m.LaplaceB
			m.NodeSigma = m.Sigma
		}
		if !(m.NodeSigma > 0) || math.IsInf(m.NodeSigma, 0) {
			return fmt.Errorf("%w: epsilon %v gives no usable noise scale", ErrRequest, p.req.Epsilon)
		}
		p.encode(m)
	}
	return nil
}

// encode chooses measure m's fixed-point grid, the quantum q = 1/Scale = 2^−k,
// and raises the noise where the grid cannot be fine enough.
//
// A node rounds its data to the grid (round(Scale·x), exact for counts, whose
// grid divides 1) and adds its noise rounded to the grid, so every slot is an
// integer number of quanta and the honest part of a release is the exact
// data plus a sum of m−T+1 independent rounded Gaussians of standard
// deviation NodeSigma·Scale quanta. Rounding each node's noise is not post-
// processing of the release: with a coarse grid (a count's quantum 1 against
// a node sigma of 0.1 on a 52-node network) the rounded shares are almost
// always 0 and the release is the exact total. The rule that keeps the
// release as noisy as charged is q ≤ NodeSigma/4 for every measure: the
// rounded Gaussian is then within e^(−2π²·16) of a shifted copy of itself in
// every respect that matters here, and queries/dp's TestReleasedNoiseMatches
// Charge computes the exact (ε, δ) of the rounded sum for 2 to 300 nodes.
//
// Counts keep q ≤ 1 (k ≥ 0) so that their integer data are on the grid. Sums
// start from about 2^6 quanta per row bound (ample resolution) and have their
// data rounded by the node: one patient then moves a slot by at most
// PerCell + q, so their per-cell sensitivity is charged as PerCell + q.
//
// The grid stops where the data of one partial would pass half of
// Request.PartialLimit (and at 2^30); where the noise rule would need a
// finer grid, NodeSigma is raised to 4q instead: the release carries more
// noise than the charged ρ requires (it is more private than charged),
// which happens only at very large ε.
func (p *Plan) encode(m *Measure) {
	var k int
	switch m.Kind {
	case Sum, SumSquares:
		k = 6 - int(math.Ceil(math.Log2(m.PerCell/float64(p.rows))))
	default:
		k = 0
	}
	if p.mech == Gaussian || m.Kind == Sum || m.Kind == SumSquares {
		// (A Laplace count needs no finer grid: each node's own full
		// Laplace noise protects it, and rounding that is post-processing.)
		k = max(k, int(math.Ceil(math.Log2(4/m.NodeSigma))))
	}
	if data := float64(p.maxPat) * m.PerCell; data > 0 {
		limit := float64(p.req.PartialLimit)
		if limit <= 0 {
			limit = DefaultPartialLimit
		}
		kmax := int(math.Floor(math.Log2(limit / 2 / data)))
		if m.Kind != Sum && m.Kind != SumSquares {
			kmax = max(kmax, 0)
		}
		k = min(k, kmax)
	}
	k = max(-20, min(k, 30))
	m.Scale = math.Ldexp(1, k)
	q := 1 / m.Scale
	if m.Kind == Sum || m.Kind == SumSquares {
		// The node rounds its data to the grid: charge PerCell + q.
		kn, g := float64(m.Nodes), float64(m.Groups)
		m.L2 = kn * (m.PerCell + q) * math.Sqrt(g)
		m.L1 = kn * (m.PerCell + q) * g
		switch p.mech {
		case Gaussian:
			m.Sigma = zcdp.GaussianSigma(m.L2, m.Rho)
			m.NodeSigma = m.Sigma / math.Sqrt(float64(p.honest))
		case Laplace:
			m.LaplaceB = m.L1 / m.Epsilon
			m.Sigma = math.Sqrt2 * m.LaplaceB
			m.NodeSigma = m.Sigma
		}
	}
	if floor := 4 * q; m.NodeSigma < floor && (p.mech == Gaussian || m.Kind == Sum || m.Kind == SumSquares) {
		m.NodeSigma = floor
		switch p.mech {
		case Gaussian:
			m.Sigma = floor * math.Sqrt(float64(p.honest))
		case Laplace:
			m.Sigma = floor
			m.LaplaceB = floor / math.Sqrt2
		}
	}
}

// VectorLen is the number of int64 slots of a node's partial: measures ×
// cells, measure-major (slot = measure·Cells + cell).
func (p *Plan) VectorLen() int { return len(p.measures) * p.cells }

// NodeSigmas returns, per slot, the standard deviation of the noise one node
// adds, in encoded units (NodeSigma·Scale).
func (p *Plan) NodeSigmas() []float64 {
	out := make([]float64, 0, p.VectorLen())
	for _, m := range p.measures {
		for c := 0; c < p.cells; c++ {
			out = append(out, m.NodeSigma*m.Scale)
		}
	}
	return out
}

// NoiseTail is where one node's noise of measure m is taken to end, in
// natural units (tail): a well-formed partial's noise is below it in
// magnitude but with probability < 2e-23 (Gaussian) or < 1e-13 (Laplace)
// per slot.
func (p *Plan) NoiseTail(m *Measure) float64 { return p.tail(m) }

// tail is where a node's noise is cut: 10σ for Gaussian (probability
// < 2e-23 per slot), 30b for Laplace (< 1e-13).
func (p *Plan) tail(m *Measure) float64 {
	if p.mech == Laplace {
		return 30 * m.LaplaceB
	}
	return 10 * m.NodeSigma
}

// MaxAbsPartial is the bound on |slot| of one partial: a node of at most
// Catalogue.MaxPatientsPerNode patients each changing a cell by at most
// PerCell, plus the noise tail (10σ Gaussian, 30b Laplace), plus rounding.
// A node clamps every slot to it (dp.NoiseShare), so it holds for every
// partial, not only with high probability.
func (p *Plan) MaxAbsPartial() int64 {
	var worst float64
	for i := range p.measures {
		m := &p.measures[i]
		v := (float64(p.maxPat)*m.PerCell + p.tail(m)) * m.Scale
		worst = max(worst, v)
	}
	return satInt(worst + 2)
}

// PartialBound is the range [lo, hi] of slot `slot` (measure-major, as in
// VectorLen) of one node's partial: hi is MaxAbsPartial; lo is
// −MaxAbsPartial, or for a count (its data are never negative) minus the
// noise tail on the plan's grid and one quantum of rounding. A node clamps
// every slot to it (dp.NoiseShare) and proves that it did
// (crypto/rangeproof), so it holds for every partial a decryptor accepts.
func (p *Plan) PartialBound(slot int) (lo, hi int64) {
	hi = p.MaxAbsPartial()
	m := &p.measures[slot/p.cells]
	if m.Kind == CountRows || m.Kind == CountDistinct || m.Kind == CountValues {
		return -satInt(p.tail(m)*m.Scale + 1), hi
	}
	return -hi, hi
}

// MaxAbsTotal is the worst case of |slot| in the sum of `nodes` partials,
// nodes × MaxAbsPartial: deterministic, because every node clamps its slots
// to MaxAbsPartial. The coordinator and every node compare it with the
// plaintext range of the encryption and refuse a query that could wrap.
func (p *Plan) MaxAbsTotal(nodes int) int64 {
	n := int64(max(nodes, 1))
	one := p.MaxAbsPartial()
	if one > math.MaxInt64/2/n {
		return math.MaxInt64 / 2
	}
	return n * one
}

func satInt(v float64) int64 {
	if v >= math.MaxInt64/2 || math.IsNaN(v) {
		return math.MaxInt64 / 2
	}
	return int64(math.Ceil(v))
}

// Rho is the zCDP cost of the query (Gaussian: from (ε, δ); Laplace: ε²/2).
// This is what a node's ledger debits.
func (p *Plan) Rho() float64 { return p.rho }

// Epsilon is the ε of the query's (ε, δ) guarantee.
func (p *Plan) Epsilon() float64 { return p.req.Epsilon }

// Delta is the δ of the query's (ε, δ) guarantee (0 for Laplace).
func (p *Plan) Delta() float64 { return p.req.Delta }

// Mechanism returns Gaussian or Laplace.
func (p *Plan) Mechanism() string { return p.mech }

// Request returns the request the plan was built from (mechanism filled in).
func (p *Plan) Request() Request { return p.req }

// Table is the table the query reads (FROM).
func (p *Plan) Table() string { return p.table }

// Where is the filter (nil: all rows).
func (p *Plan) Where() Pred { return p.where }

// Keys returns the group keys (none: one cell).
func (p *Plan) Keys() []Key { return append([]Key(nil), p.keys...) }

// Cells is the size of the group domain (product of the key domains; 1
// without GROUP BY).
func (p *Plan) Cells() int { return p.cells }

// Measures returns the noisy vectors, in slot order.
func (p *Plan) Measures() []Measure { return append([]Measure(nil), p.measures...) }

// Outputs returns the result columns: keys first, then the aggregates in
// select-list order.
func (p *Plan) Outputs() []Output { return append([]Output(nil), p.outputs...) }

// MaxGroupsPerPatient is G, the cells one patient may contribute to.
func (p *Plan) MaxGroupsPerPatient() int { return p.groups }

// MaxRowsPerPatient is R, the rows one patient may contribute to one cell.
func (p *Plan) MaxRowsPerPatient() int { return p.rows }

// MaxPatientsPerNode is the node size the bounds assume; eval refuses more.
func (p *Plan) MaxPatientsPerNode() int { return p.maxPat }

// SmallCountThreshold is k: counts below it display as "< k" (0: off).
func (p *Plan) SmallCountThreshold() int { return p.smallK }

// HonestNodes is m−T+1, the partials of a release that no colluder controls.
func (p *Plan) HonestNodes() int { return p.honest }

// ReferenceDate is the date at which age is computed.
func (p *Plan) ReferenceDate() cdm.Date { return p.req.ReferenceDate }

// Kind names the query kind for node policy: "count", "sum", "mean" or
// "variance" (the most revealing aggregate present), prefixed "grouped-"
// when the query has GROUP BY.
func (p *Plan) Kind() string {
	kind := "count"
	rank := map[string]int{"count": 0, "sum": 1, "mean": 2, "variance": 3}
	for _, o := range p.outputs {
		k := ""
		switch o.Kind {
		case OutSum:
			k = "sum"
		case OutMean:
			k = "mean"
		case OutVariance, OutStddev:
			k = "variance"
		}
		if k != "" && rank[k] > rank[kind] {
			kind = k
		}
	}
	if len(p.keys) > 0 {
		return "grouped-" + kind
	}
	return kind
}
