package collective

import (
	"fmt"
	"math/big"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
)

// NeighbourShare returns the Shamir share share (as ThresholdDealChecked
// encodes it) moved by a^-1*eta, a the CRS polynomial of crs and eta the
// integer polynomial eta (N coefficients): the neighbour of a share that
// passes a check against one set of images under a, which anyone can
// compute from public values (docs/crypto.md, "What one set of images
// allowed"). CheckDealtShare refuses it under a'. Nothing in fedstat
// deals with it: it is for the tests that show a dealer doing so named.
func NeighbourShare(p homomorphic.Params, crs, share []byte, eta []int64) ([]byte, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	r := p.BGV(tok).RingQ()
	if len(eta) != r.N() {
		return nil, fmt.Errorf("%w: eta of %d coefficients, want %d", ErrInvalidArgument, len(eta), r.N())
	}
	sigma := r.NewPoly()
	h, err := decode(p, polycodec.KindShamirShare, p.BGV(tok).MaxLevel(), share, sigma)
	if err != nil {
		return nil, err
	}
	defer wipe(sigma.Coeffs)
	crp, err := ckgPoly(p, crs)
	if err != nil {
		return nil, err
	}
	e := r.NewPoly()
	setMForm(r, e, eta)
	// The check's Montgomery product makes delta*crp*R^-1 of delta; it
	// must be MForm(NTT(eta)) = e: delta = e*R*crp^-1 modulo each prime.
	for j, sr := range r.SubRings[:r.Level()+1] {
		q := new(big.Int).SetUint64(sr.Modulus)
		rr := new(big.Int).Lsh(big.NewInt(1), 64)
		rr.Mod(rr, q)
		for i := range e.Coeffs[j] {
			inv := new(big.Int).ModInverse(new(big.Int).SetUint64(crp.Coeffs[j][i]), q)
			if inv == nil {
				return nil, fmt.Errorf("%w: the CRS polynomial is not invertible", ErrInvalidArgument)
			}
			d := new(big.Int).SetUint64(e.Coeffs[j][i])
			d.Mul(d, rr).Mul(d, inv).Mod(d, q)
			sigma.Coeffs[j][i] = (sigma.Coeffs[j][i] + d.Uint64()) % sr.Modulus
		}
	}
	return encode(p, polycodec.KindShamirShare, h.Aux0, h.Aux1, sigma)
}
