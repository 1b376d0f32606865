// Package resultpb converts released results between their Go form
// (queries/result) and their wire form (fedstat.types.v1.Result): the
// coordinator encodes what queries/dp released, clients decode it. It is the
// one conversion both sides use, so that a field added to a released number
// (such as its noise variance) travels the same way over gRPC and over the
// HTTP/JSON API (protobuf's JSON form of the same message).
package resultpb

import (
	"math"

	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/result"
)

// ToProto converts a released result to its wire form. A suppressed number
// travels without its value, interval and variance; a NaN variance (none
// known) is not sent.
func ToProto(r *result.Result) *typesv1.Result {
	out := &typesv1.Result{Columns: r.Columns, KeyColumns: int32(r.KeyColumns), Epsilon: r.Epsilon, Delta: r.Delta, Rho: r.Rho,
		Mechanism: r.Mechanism, Nodes: int32(r.Nodes), SmallCountThreshold: int32(r.SmallCountThreshold), KeyNames: r.KeyNames}
	for _, row := range r.Rows {
		pr := &typesv1.Row{Keys: row.Keys}
		for _, v := range row.Values {
			n := &typesv1.Number{Display: v.Display, Suppressed: v.Suppressed}
			if !v.Suppressed {
				n.Value, n.CiLow, n.CiHigh = v.Value, v.CILow, v.CIHigh
				if !math.IsNaN(v.Variance) && !math.IsInf(v.Variance, 0) {
					vr := v.Variance
					n.Variance = &vr
				}
			}
			pr.Values = append(pr.Values, n)
		}
		out.Rows = append(out.Rows, pr)
	}
	return out
}

// FromProto converts a wire result back, for formatting and for methods
// that solve on released totals. A suppressed number has NaN value and
// interval; a number sent without a variance has a NaN Variance.
func FromProto(p *typesv1.Result) *result.Result {
	r := &result.Result{Columns: p.GetColumns(), KeyColumns: int(p.GetKeyColumns()), Epsilon: p.GetEpsilon(), Delta: p.GetDelta(),
		Rho: p.GetRho(), Mechanism: p.GetMechanism(), Nodes: int(p.GetNodes()), SmallCountThreshold: int(p.GetSmallCountThreshold()),
		KeyNames: p.GetKeyNames()}
	for _, row := range p.GetRows() {
		rr := result.Row{Keys: row.GetKeys()}
		for _, v := range row.GetValues() {
			n := result.Number{Value: v.GetValue(), CILow: v.GetCiLow(), CIHigh: v.GetCiHigh(), Display: v.GetDisplay(), Suppressed: v.GetSuppressed(), Variance: math.NaN()}
			if v.Variance != nil {
				n.Variance = v.GetVariance()
			}
			if n.Suppressed {
				n.Value, n.CILow, n.CIHigh, n.Variance = math.NaN(), math.NaN(), math.NaN(), math.NaN()
			}
			rr.Values = append(rr.Values, n)
		}
		r.Rows = append(r.Rows, rr)
	}
	return r
}
