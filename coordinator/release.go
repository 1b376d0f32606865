package coordinator

import (
	"fmt"
	"math"
	"time"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/resultpb"
	"github.com/fedstat/fedstat/internal/terminology"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/result"
)

// The release step of a query: the coordinator decrypts the total, and
// nothing else, and releases it under differential privacy.

// release decrypts the key-switched sum of parts under the result key rk,
// checks it against the sum of the partials' range commitments, and
// releases it (dp.Release).
func (c *Coordinator) release(q *query, rk *homomorphic.ResultKey, switched []*homomorphic.Ciphertext, parts []partial) (*typesv1.Result, error) {
	start := time.Now()
	d := q.plan.VectorLen()
	encoded, err := homomorphic.DecryptTotal(c.params, rk, switched, rangeproof.EncodedLen(d))
	if err != nil {
		return nil, fmt.Errorf("%w: decrypt: %v", ErrQueryFailed, err)
	}
	// The total must be the sum of the values every member committed to and
	// proved within the plan's bounds. The links checked every value and
	// padding slot member by member, naming; what is caught here is a
	// member's wrong limbs of its blindings (the links do not cover them)
	// or a decryptor's share not of this sum (shares go out unproven): the
	// caller then asks for the proofs of both, to name whoever cannot
	// (nameUnprovenShares, nameUnprovenLimbs).
	commitments := make([][]byte, len(parts))
	for i, pt := range parts {
		commitments[i] = pt.commitments
	}
	totals, err := rangeproof.CheckTotal(commitments, encoded, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: a member encrypted wrong limbs of its commitments' blindings, or a decryptor's share was not of this sum; nothing is released", ErrQueryFailed, err)
	}
	r, err := dp.Release(q.plan, totals, len(parts))
	if err != nil {
		return nil, fmt.Errorf("%w: release: %v", ErrQueryFailed, err)
	}
	q.phase("decrypt+release", start)
	nameCodes(c.cfg.Catalogue, q.plan, r)
	if q.series != nil {
		keepSmall(r)
	}
	return resultpb.ToProto(r), nil
}

// keepSmall releases the counts of a series interval whole: the series
// estimator needs every interval's value (a small count is as much a
// differentially private release as a large one; the small-count threshold
// only hides it from display). The series view flags its estimates below
// the threshold instead (SeriesValue.suppressed).
func keepSmall(r *result.Result) {
	for i := range r.Rows {
		for j, n := range r.Rows[i].Values {
			if n.Suppressed && !math.IsNaN(n.Value) && !math.IsNaN(n.Variance) {
				n.Suppressed, n.Display = false, result.FormatValue(n.Value, true)
				r.Rows[i].Values[j] = n
			}
		}
	}
}

// releasePlaintext is the benchmark-only release of plaintext partials: the
// plain sum, then the same post-processing as an encrypted release.
func (c *Coordinator) releasePlaintext(q *query, parts []partial) (*typesv1.Result, error) {
	start := time.Now()
	totals := make([]int64, q.plan.VectorLen())
	for _, pt := range parts {
		for i, v := range pt.plain {
			totals[i] += v
		}
	}
	q.phase("aggregate", start)
	start = time.Now()
	r, err := dp.Release(q.plan, totals, len(parts))
	if err != nil {
		return nil, fmt.Errorf("%w: release: %v", ErrQueryFailed, err)
	}
	q.phase("decrypt+release", start)
	nameCodes(c.cfg.Catalogue, q.plan, r)
	if q.series != nil {
		keepSmall(r)
	}
	return resultpb.ToProto(r), nil
}

// nameCodes gives the released result the display names that the
// catalogue's value sets give the codes among its key labels (public
// metadata: the labels come from the query, the names from the catalogue).
func nameCodes(cat *plan.Catalogue, p *plan.Plan, r *result.Result) {
	if cat == nil || len(cat.ValueSets) == 0 {
		return
	}
	names := cat.CodeNames()
	for _, k := range p.Keys() {
		if !k.Codes {
			continue
		}
		for _, l := range k.Labels {
			for _, f := range terminology.Forms(l) {
				if n, ok := names[f]; ok {
					if r.KeyNames == nil {
						r.KeyNames = map[string]string{}
					}
					r.KeyNames[l] = n
					break
				}
			}
		}
	}
}
