package plan

import (
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
)

// The types below are the plan's resolved form that eval executes. Values
// reachable from a *Plan are shared and must be treated as read-only.

// ColumnRef is a resolved column.
type ColumnRef struct {
	Name string
	Type cdm.ColumnType
	// Patient is true for a column of the patients table (sex, region,
	// birth_date, death_date): a row of any table reads it through its
	// patient. On the patients table itself such a column is read directly.
	Patient bool
	// Clamped is set for a number column of a study: every read is clamped
	// to the column's public range [Lo, Hi].
	Clamped bool
	Lo, Hi  float64
}

// Value is a numeric expression: a number or date column (dates as days
// since 1970-01-01), age, a constant, or arithmetic. A missing input makes
// the value NaN.
type Value interface{ isValue() }

// ColumnValue reads a number or date column.
type ColumnValue struct{ Col ColumnRef }

// AgeValue is the patient's age in whole years at the plan's reference date
// (NaN when the birth date is missing or after the reference date).
type AgeValue struct{}

// ConstValue is a constant (a number, or a date literal as a day number).
type ConstValue struct{ V float64 }

// ArithValue is L op R with op one of + - * /; division by zero is NaN.
type ArithValue struct {
	Op   byte
	L, R Value
}

// NegValue is -X.
type NegValue struct{ X Value }

// FuncValue is EXP(X) or LN(X) (Name "exp" or "ln"); LN of x <= 0 is
// missing.
type FuncValue struct {
	Name string
	X    Value
}

// IndicatorValue is a condition used as a number: 1 when P holds for the
// row, else 0 (a comparison with a missing value does not hold).
type IndicatorValue struct{ P Pred }

func (FuncValue) isValue()      {}
func (IndicatorValue) isValue() {}
func (ColumnValue) isValue()    {}
func (AgeValue) isValue()       {}
func (ConstValue) isValue()     {}
func (ArithValue) isValue()     {}
func (NegValue) isValue()       {}

// Pred is a row predicate. Comparisons with a missing value are false (two-
// valued logic: NOT of such a comparison is true).
type Pred interface{ isPred() }

// And is L AND R.
type And struct{ L, R Pred }

// Or is L OR R.
type Or struct{ L, R Pred }

// Not is NOT X.
type Not struct{ X Pred }

// StringIn is Col IN (Values) (Col = v, or Col <> v with Negate), or, with
// Prefixes, a value that equals one of Values or starts with one of
// Prefixes (LIKE 'head%', a value set's code families). On a code column
// (Codes) a prefix is a code family, terminology.InFamily.
type StringIn struct {
	Col      ColumnRef
	Values   []string
	Prefixes []string
	Codes    bool
	Negate   bool
	// Labels are the values as the query wrote them, one per literal, when
	// Values also holds their other forms (a code's ICD-10 canonical form);
	// group domains are made of these. Nil: Values.
	Labels []string
}

// Compare is L op R over numbers (dates are day numbers); op is one of
// = <> < <= > >=.
type Compare struct {
	L  Value
	Op string
	R  Value
}

// Cohort is patient_id [NOT] IN (SELECT patient_id FROM Table WHERE Where):
// true for rows whose patient has at least one row of Table satisfying
// Where (nil Where: any row).
type Cohort struct {
	Table  string
	Where  Pred
	Negate bool
}

func (*And) isPred()      {}
func (*Or) isPred()       {}
func (*Not) isPred()      {}
func (*StringIn) isPred() {}

// UnderPrefix reports whether v starts one of p's prefixes: on a code
// column a code family (terminology.InFamily), else a plain prefix. The one
// rule eval applies to stored values.
func (p *StringIn) UnderPrefix(v string) bool {
	for _, pre := range p.Prefixes {
		if (p.Codes && terminology.InFamily(v, pre)) || (!p.Codes && strings.HasPrefix(v, pre)) {
			return true
		}
	}
	return false
}
func (*Compare) isPred() {}
func (*Cohort) isPred()  {}

// KeyKind is the kind of a group key.
type KeyKind uint8

// Group key kinds.
const (
	KeyWeek    KeyKind = iota + 1 // ISO week (Monday start) of a date column
	KeyMonth                      // calendar month of a date column
	KeyYear                       // calendar year of a date column
	KeyString                     // value of a text column, from a public list
	KeyAgeBand                    // age band of Width years
	KeyBin                        // bins of a number (study columns): [BinLo+i·BinWidth, BinLo+(i+1)·BinWidth)
)

// Key is one GROUP BY key with its public domain.
type Key struct {
	Name string // output column name
	Kind KeyKind
	// Col is the date column (time keys) or text column (KeyString); unused
	// for KeyAgeBand.
	Col ColumnRef
	// Labels is the domain, in output order.
	Labels []string
	// Codes is set for a code column's key: a label stands for its every
	// form (terminology.Forms), so E119 collects the stored E11.9.
	Codes bool
	// First is the bucket number of Labels[0] for time keys: weeks since the
	// Monday 1969-12-29, months since year 0 (y*12+m-1), or the year.
	First int
	// Width and Start describe age bands: label i covers ages
	// [Start+i*Width, Start+(i+1)*Width); when OpenTop the last band before
	// "unknown" is open ("110+"); when Unknown the last label is "unknown"
	// for patients without a usable birth date.
	Width, Start     int
	OpenTop, Unknown bool
	// Top is the first age of the open band (Catalogue.MaxAge) when OpenTop.
	Top int
	// Value, BinLo and BinWidth describe KeyBin: label i covers
	// [BinLo+i·BinWidth, BinLo+(i+1)·BinWidth); values below the first bin
	// fall in it and values above the last in the last (the column's public
	// range clamps), missing values are dropped.
	Value           Value
	BinLo, BinWidth float64
	// RowLevel reports whether one patient can fall into several labels of
	// this key (a row-level date or code); patient attributes (sex, region,
	// age band) give each patient exactly one label.
	RowLevel bool
}

// MeasureKind is the kind of a noisy vector the nodes compute.
type MeasureKind uint8

// Measure kinds.
const (
	CountRows     MeasureKind = iota + 1 // COUNT(*): rows per cell
	CountDistinct                        // COUNT(DISTINCT patient_id): patients per cell
	CountValues                          // rows per cell whose Value is not missing (denominator of AVG etc.)
	Sum                                  // Σ (clamp(Value, Lo, Hi) − Center)
	SumSquares                           // Σ (clamp(Value, Lo, Hi) − Center)²
)

// Measure is one noisy vector over the cells of the group domain: the unit
// of sensitivity, budget and noise.
type Measure struct {
	Kind   MeasureKind
	Label  string // e.g. "COUNT(DISTINCT patient_id)", "SUM(CLAMP(value, 3, 20) - 11.5)"
	Value  Value  // nil for CountRows and CountDistinct
	Lo, Hi float64
	Center float64
	// PerCell is the most one patient can change one cell (C).
	PerCell float64
	// Nodes is K, the nodes whose contributions of one patient add up in
	// this measure: Catalogue.MaxNodesPerPatient, or for a linked plan 1
	// (the match histogram) and Request.LinkHolders (the payload; the
	// catalogue's when the request does not say).
	Nodes int
	// Groups is G, the cells one patient may change: Plan.MaxGroupsPerPatient,
	// or for a linked plan's match histogram the cells one resident may
	// appear in (see Plan.Link).
	Groups int
	// L2 = K·PerCell·√G and L1 = K·PerCell·G are the sensitivities of the
	// whole vector (K = Nodes, G = Groups).
	L2, L1 float64
	// Rho is this measure's share of the query's zCDP budget (Gaussian), or
	// ε_j²/2 for Laplace.
	Rho float64
	// Epsilon is this measure's share of ε (Laplace only).
	Epsilon float64
	// Sigma is the standard deviation of the noise that the honest nodes
	// together add (Gaussian: L2/√(2ρ_j)); for Laplace it is the standard
	// deviation √2·b of one node's Laplace noise, b = L1/ε_j.
	Sigma float64
	// NodeSigma is the standard deviation of one node's share, natural
	// units: Sigma/√(m−T+1) (Gaussian) or √2·b (Laplace).
	NodeSigma float64
	// LaplaceB is the Laplace scale b = L1/ε_j each node draws with (0 for
	// Gaussian).
	LaplaceB float64
	// Scale is the fixed-point scale, a power of two: slot =
	// round(Scale·value) + round(Scale·noise), with NodeSigma·Scale ≥ 4
	// (see Plan.encode). At least 1 for counts.
	Scale float64
}

// OutputKind is what a result column shows.
type OutputKind uint8

// Output kinds.
const (
	OutKey      OutputKind = iota + 1 // a group key
	OutCount                          // a count measure
	OutSum                            // SUM: a Sum measure with Center 0
	OutMean                           // AVG: Center + Sum/Count
	OutVariance                       // VARIANCE: SumSq/Count − (Sum/Count)²
	OutStddev                         // STDDEV: √VARIANCE
)

// Output is one column of the result.
type Output struct {
	Name string
	Kind OutputKind
	Key  int // OutKey: index into Keys
	// Measure indices (−1 when unused): Count for OutCount, OutMean,
	// OutVariance, OutStddev; Sum for OutSum, OutMean, OutVariance,
	// OutStddev; SumSq for OutVariance, OutStddev.
	Count, Sum, SumSq int
	Center, Lo, Hi    float64
}

// Study returns the schema of the study table named name in the catalogue.
func (c *Catalogue) Study(name string) (*cdm.StudySchema, bool) {
	for i := range c.Studies {
		if c.Studies[i].Name == name {
			return &c.Studies[i], true
		}
	}
	return nil, false
}
