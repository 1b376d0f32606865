package collective_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// thresholdNetwork deals and aggregates threshold shares among nw's members,
// identified by points.
func thresholdNetwork(t testing.TB, nw *network, threshold int, points []uint64) map[uint64]*collective.ThresholdShare {
	t.Helper()
	inbox := map[uint64][][]byte{}
	for _, sk := range nw.sks {
		dealt, err := collective.ThresholdDeal(nw.p, sk, threshold, points)
		if err != nil {
			t.Fatal(err)
		}
		if len(dealt) != len(points) {
			t.Fatalf("dealt %d shares", len(dealt))
		}
		for x, b := range dealt {
			inbox[x] = append(inbox[x], b)
		}
	}
	out := map[uint64]*collective.ThresholdShare{}
	for _, x := range points {
		ts, err := collective.ThresholdAggregate(nw.p, x, inbox[x])
		if err != nil {
			t.Fatal(err)
		}
		// Round trip through storage.
		b, err := ts.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		ts2, err := collective.UnmarshalThresholdShare(nw.p, b)
		if err != nil {
			t.Fatal(err)
		}
		if ts2.Self() != x || ts2.Threshold() != threshold {
			t.Fatalf("round trip: self %d threshold %d", ts2.Self(), ts2.Threshold())
		}
		out[x] = ts2
	}
	return out
}

func subsets(points []uint64, k int) [][]uint64 {
	if k == 0 {
		return [][]uint64{nil}
	}
	if len(points) < k {
		return nil
	}
	var out [][]uint64
	for _, rest := range subsets(points[1:], k-1) {
		out = append(out, append([]uint64{points[0]}, rest...))
	}
	return append(out, subsets(points[1:], k)...)
}

func additiveShares(t testing.TB, p homomorphic.Params, ts map[uint64]*collective.ThresholdShare, members, active []uint64, unchecked bool) []*homomorphic.SecretKeyShare {
	t.Helper()
	var sks []*homomorphic.SecretKeyShare
	for _, x := range members {
		var sk *homomorphic.SecretKeyShare
		var err error
		if unchecked {
			sk, err = collective.AdditiveUnchecked(ts[x], p, active)
		} else {
			sk, err = ts[x].Additive(p, active)
		}
		if err != nil {
			t.Fatal(err)
		}
		sks = append(sks, sk)
	}
	return sks
}

func TestThreshold(t *testing.T) {
	for _, tc := range []struct {
		t      int
		points []uint64
	}{
		{2, []uint64{11, 22, 33}},
		{3, []uint64{5, 1 << 40, 77, 1<<59 - 1, 3}},
	} {
		t.Run(fmt.Sprintf("%d-of-%d", tc.t, len(tc.points)), func(t *testing.T) {
			p := testParams(t)
			nw := newNetwork(t, p, len(tc.points))
			ts := thresholdNetwork(t, nw, tc.t, tc.points)
			rk, _ := homomorphic.GenResultKey(p)
			n := 40
			v := make([]int64, n)
			for i := range v {
				v[i] = int64(i*i) - 300
			}
			cts, err := homomorphic.Encrypt(p, nw.pk, v)
			if err != nil {
				t.Fatal(err)
			}
			for _, active := range subsets(tc.points, tc.t) {
				sks := additiveShares(t, p, ts, active, active, false)
				if got := release(t, p, sks, rk, cts, n); !equal(got, v) {
					t.Fatalf("active set %v: release failed", active)
				}
			}
			for _, few := range subsets(tc.points, tc.t-1) {
				// Refused outright...
				if _, err := ts[few[0]].Additive(p, few); !errors.Is(err, collective.ErrThreshold) {
					t.Fatalf("T-1 members: err = %v", err)
				}
				// ...and forcing it gives garbage.
				sks := additiveShares(t, p, ts, few, few, true)
				if got := release(t, p, sks, rk, cts, n); matches(got, v) > 2 {
					t.Fatalf("T-1 members %v decrypted", few)
				}
				// Shares computed for a T-set of which one member stays away: garbage.
				var absent uint64
				for _, x := range tc.points {
					if !contains(few, x) {
						absent = x
						break
					}
				}
				sks = additiveShares(t, p, ts, few, append(append([]uint64{}, few...), absent), false)
				if got := release(t, p, sks, rk, cts, n); matches(got, v) > 2 {
					t.Fatalf("T-1 of a T-set %v decrypted", few)
				}
			}
		})
	}
}

func contains(s []uint64, x uint64) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func TestThresholdErrors(t *testing.T) {
	p := testParams(t)
	sk, _ := homomorphic.GenSecretKeyShare(p)
	for _, pts := range [][]uint64{{1, 0, 2}, {1, 1, 2}, {1, 1 << 60}} {
		if _, err := collective.ThresholdDeal(p, sk, 2, pts); !errors.Is(err, collective.ErrInvalidArgument) {
			t.Fatalf("points %v: err = %v", pts, err)
		}
	}
	for _, th := range []int{0, 4} {
		if _, err := collective.ThresholdDeal(p, sk, th, []uint64{1, 2, 3}); !errors.Is(err, collective.ErrInvalidArgument) {
			t.Fatalf("threshold %d: err = %v", th, err)
		}
	}
	dealt, err := collective.ThresholdDeal(p, sk, 2, []uint64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := collective.ThresholdAggregate(p, 1, [][]byte{dealt[2]}); !errors.Is(err, collective.ErrMismatch) {
		t.Fatalf("misaddressed share: err = %v", err)
	}
	ts, err := collective.ThresholdAggregate(p, 1, [][]byte{dealt[1], dealt[1]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Additive(p, []uint64{2, 3}); !errors.Is(err, collective.ErrInvalidArgument) {
		t.Fatalf("self not active: err = %v", err)
	}
	if _, err := ts.Additive(p, []uint64{1, 1}); !errors.Is(err, collective.ErrInvalidArgument) {
		t.Fatalf("duplicate active: err = %v", err)
	}
}

func TestThresholdShareRedaction(t *testing.T) {
	p := testParams(t)
	sk, _ := homomorphic.GenSecretKeyShare(p)
	dealt, _ := collective.ThresholdDeal(p, sk, 1, []uint64{9})
	ts, err := collective.ThresholdAggregate(p, 9, [][]byte{dealt[9]})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{ts, *ts} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
			if out := fmt.Sprintf(verb, v); out != homomorphic.Redacted {
				t.Errorf("%s of %T printed %q", verb, v, out)
			}
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "ts", ts, "v", *ts)
	if strings.Count(buf.String(), homomorphic.Redacted) != 2 {
		t.Fatalf("slog: %s", buf.String())
	}
	for _, v := range []any{ts, *ts} {
		if out, err := json.Marshal(v); err != nil || string(out) != "{}" {
			t.Errorf("json of %T: %s, %v", v, out, err)
		}
	}
}
