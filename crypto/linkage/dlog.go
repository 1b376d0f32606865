package linkage

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/gtank/ristretto255"
)

// MaxBound is the largest bound DiscreteLog accepts (about 1.1·10^12).
const MaxBound = 1 << 40

// maxTableLog caps the baby-step table at 2^18 entries (about 15 MB, a
// fraction of a second to build on two cores); larger bounds take more giant
// steps instead.
const maxTableLog = 18

// babyTable maps the encoding of j·B to j for j in [0, 2^log).
type babyTable struct {
	once sync.Once
	log  int
	idx  map[Point]uint32
}

var (
	tablesMu sync.Mutex
	tables   = map[int]*babyTable{}
)

// table returns the cached table of 2^log baby steps, building it (once,
// in parallel) on first use. Concurrent callers wait for one build.
func table(log int) *babyTable {
	tablesMu.Lock()
	t, ok := tables[log]
	if !ok {
		t = &babyTable{log: log}
		tables[log] = t
	}
	tablesMu.Unlock()
	t.once.Do(t.build)
	return t
}

func (t *babyTable) build() {
	m := 1 << t.log
	enc := make([]Point, m)
	_ = parallel(m, func(lo, hi int) error {
		p := ristretto255.NewIdentityElement().ScalarBaseMult(scalarFromUint64(uint64(lo)))
		b := ristretto255.NewGeneratorElement()
		for j := lo; j < hi; j++ {
			enc[j] = encodePoint(p)
			p.Add(p, b)
		}
		return nil
	})
	t.idx = make(map[Point]uint32, m)
	for j := range enc {
		t.idx[enc[j]] = uint32(j)
	}
}

// DiscreteLog returns the integer v in [−bound, bound] with p = v·B, by
// baby-step giant-step: a table of m baby steps j·B (m the power of two at
// or above √(2·bound+1), at most 2^18; built on first use and cached for
// the life of the process per table size, safe for concurrent use) and up to
// ⌈(2·bound+1)/m⌉ giant steps, split over GOMAXPROCS goroutines. The giant
// steps start at 0 and go outward, so a call costs about |v|/m giant steps
// (each an addition and an encoding) however loose the bound, and the full
// ⌈(2·bound+1)/m⌉ when v is out of range.
//
// It returns ErrOutOfRange when no such v exists (a value beyond the bound,
// or a point that is not v·B for a small v, e.g. from a wrong decryption
// share), ErrInvalidArgument for a bound outside [0, MaxBound], and
// ErrEncoding for a non-canonical p. Its running time depends on v, which
// is meant to be released (it is a decrypted aggregate); do not use it on
// secrets.
func DiscreteLog(p Point, bound int64) (int64, error) {
	if bound < 0 || bound > MaxBound {
		return 0, fmt.Errorf("%w: bound %d outside [0, %d]", ErrInvalidArgument, bound, int64(MaxBound))
	}
	pe, err := p.decode()
	if err != nil {
		return 0, fmt.Errorf("discrete log: %w", err)
	}
	span := uint64(2*bound + 1) // values shifted to [0, 2·bound]
	logSize := min(bits.Len64(isqrtCeil(span)-1), maxTableLog)
	t := table(logSize)
	m := uint64(1) << logSize
	giants := (span + m - 1) / m

	// Q = p + bound·B; look for Q − i·m·B = j·B, then v = i·m + j − bound.
	q := ristretto255.NewIdentityElement().ScalarBaseMult(scalarFromUint64(uint64(bound)))
	q.Add(q, pe)
	step := ristretto255.NewIdentityElement().ScalarBaseMult(scalarFromUint64(m))

	// Giant steps go outward from the one that holds v = 0, so the time
	// grows with |v| rather than with the bound (which callers set loosely).
	// Worker w takes the distances d ≡ w (mod workers), both directions.
	c := uint64(bound) / m
	workers := min(uint64(runtime.GOMAXPROCS(0)), giants)
	stepW := ristretto255.NewIdentityElement().ScalarMult(scalarFromUint64(workers), step)
	gc := ristretto255.NewIdentityElement().ScalarMult(scalarFromUint64(c), step)
	gc.Subtract(q, gc)
	var found atomic.Bool
	var result atomic.Uint64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws := ristretto255.NewIdentityElement().ScalarMult(scalarFromUint64(w), step)
			up := ristretto255.NewIdentityElement().Subtract(gc, ws) // Q − (c+d)·m·B
			down := ristretto255.NewIdentityElement().Add(gc, ws)    // Q − (c−d)·m·B
			try := func(i uint64, g *ristretto255.Element) bool {
				j, ok := t.idx[encodePoint(g)]
				if ok {
					result.Store(i*m + uint64(j))
					found.Store(true)
				}
				return ok
			}
			for d := w; !found.Load(); d += workers {
				upIn, downIn := c+d < giants, d <= c
				if !upIn && !downIn {
					return
				}
				if upIn && try(c+d, up) {
					return
				}
				if downIn && d > 0 && try(c-d, down) {
					return
				}
				up.Subtract(up, stepW)
				down.Add(down, stepW)
			}
		}()
	}
	wg.Wait()
	if !found.Load() {
		return 0, fmt.Errorf("%w: no v in [-%d, %d]", ErrOutOfRange, bound, bound)
	}
	// The solution is unique modulo l, so one beyond the span (the last
	// giant step overshoots) means the value is out of range.
	if u := result.Load(); u < span {
		return int64(u) - bound, nil
	}
	return 0, fmt.Errorf("%w: no v in [-%d, %d]", ErrOutOfRange, bound, bound)
}

// isqrtCeil returns ⌈√n⌉ for n >= 1.
func isqrtCeil(n uint64) uint64 {
	r := uint64(1)
	for r*r < n {
		r <<= 1
	}
	// Binary search in [r/2, r].
	lo, hi := r/2, r
	for lo < hi {
		mid := (lo + hi) / 2
		if mid*mid >= n {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}
