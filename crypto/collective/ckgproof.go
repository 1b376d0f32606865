package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
	"github.com/fedstat/fedstat/crypto/internal/shortproof"
)

// Proofs of well-formed CKG shares (docs/crypto.md, "Proofs of well-formed
// key-generation shares"). A member's CKG share is, in Lattigo's form,
//
//	p_i = e_i - s_i*a   (NTT domain; a the CRS polynomial),
//
// with a ternary secret s_i and an error |e_i| <= 19. CKGShareProven
// returns the share with a zero-knowledge proof that the member knows such
// s_i and e_i (crypto/internal/shortproof), bound to a context the caller
// chooses (epoch and member).

// ErrCKGProof is returned when a proof of a CKG share does not verify.
var ErrCKGProof = errors.New("collective: proof of the CKG share refused")

// ckgErrBound is the largest |e| of Lattigo's default error distribution.
const ckgErrBound = 19

// ckgStatement is what a proof of the CKG share share proves.
func ckgStatement(p homomorphic.Params, crp ring.Poly, share ring.Poly, context []byte) *shortproof.Statement {
	r := p.BGV(tok).RingQ()
	ctx := []byte(p.Name())
	ctx = binary.BigEndian.AppendUint64(ctx, uint64(len(context)))
	ctx = append(ctx, context...)
	return &shortproof.Statement{
		Domain: "fedstat/ckg-share/v1",
		Ring:   r,
		Bounds: []int64{1, ckgErrBound}, // s, e
		Apply: func(x [][]int64, _ []uint64, out []ring.Poly) {
			// out = MForm(NTT(e)) - NTT(s)*a: GenShare's MForm(NTT(e)) -
			// sk*a with sk = MForm(NTT(s)) and a Montgomery product.
			tmp := r.NewPoly()
			shortproof.SetSigned(r, tmp, x[1])
			r.NTT(tmp, tmp)
			r.MForm(tmp, out[0])
			shortproof.SetSigned(r, tmp, x[0])
			r.NTT(tmp, tmp)
			r.MForm(tmp, tmp)
			r.MulCoeffsMontgomeryThenSub(tmp, crp, out[0])
		},
		Image:   []ring.Poly{share},
		Context: ctx,
	}
}

// CKGShareProven returns this member's CKG share of the epoch identified by
// crs (as CKGShare) and a proof that it knows the share's secret and error,
// bound to context.
func CKGShareProven(p homomorphic.Params, sk *homomorphic.SecretKeyShare, crs, context []byte) (share, proof []byte, err error) {
	if share, err = CKGShare(p, sk, crs); err != nil {
		return nil, nil, err
	}
	r := p.BGV(tok).RingQ()
	crp, err := ckgPoly(p, crs)
	if err != nil {
		return nil, nil, err
	}
	sharePoly := r.NewPoly()
	if _, err := decode(p, polycodec.KindCKGShare, p.BGV(tok).MaxLevel(), share, sharePoly); err != nil {
		return nil, nil, err
	}
	s, e := ckgWitness(p, sk, crp, sharePoly)
	if proof, err = shortproof.Prove(ckgStatement(p, crp, sharePoly, context), [][]int64{s, e}, nil); err != nil {
		return nil, nil, fmt.Errorf("collective: proof of the CKG share: %w", err)
	}
	return share, proof, nil
}

// VerifyCKGShare checks a proof of the CKG share share of the epoch
// identified by crs, made by CKGShareProven with context.
func VerifyCKGShare(p homomorphic.Params, crs, share, proof, context []byte) error {
	if err := checkParams(p); err != nil {
		return err
	}
	crp, err := ckgPoly(p, crs)
	if err != nil {
		return err
	}
	r := p.BGV(tok).RingQ()
	sharePoly := r.NewPoly()
	if _, err := decode(p, polycodec.KindCKGShare, p.BGV(tok).MaxLevel(), share, sharePoly); err != nil {
		return err
	}
	if err := shortproof.Verify(ckgStatement(p, crp, sharePoly, context), proof); err != nil {
		return fmt.Errorf("%w: %v", ErrCKGProof, err)
	}
	return nil
}

// CKGProofSize is the length in bytes of a proof of a CKG share.
func CKGProofSize(p homomorphic.Params) int {
	r := p.BGV(tok).RingQ()
	return ckgStatement(p, r.NewPoly(), r.NewPoly(), nil).Size()
}

// ckgPoly is the CRS polynomial a of crs (NTT domain), shared: callers
// only read it. Expanding a CRS takes about 1.6 ms (a BLAKE2b stream per
// limb), once per epoch rather than once per proof with the cache.
func ckgPoly(p homomorphic.Params, crs []byte) (ring.Poly, error) {
	return crsPoly(p, ckgDomain, crs)
}

// secondPoly is the second CRS polynomial a' of crs (NTT domain), expanded
// as a is under its own domain: the polynomial of the second set of Shamir
// images (docs/crypto.md, "Checked dealing", Two sets of images). Shared:
// callers only read it.
func secondPoly(p homomorphic.Params, crs []byte) (ring.Poly, error) {
	return crsPoly(p, secondCRSDomain, crs)
}

// crsPoly is the polynomial crs expands to under domain, from the cache.
func crsPoly(p homomorphic.Params, domain string, crs []byte) (ring.Poly, error) {
	key := domain + p.Name() + "\x00" + string(crs)
	crsCache.Lock()
	for _, e := range crsCache.entries {
		if e.key == key {
			crsCache.Unlock()
			return e.poly, nil
		}
	}
	crsCache.Unlock()
	crp, err := crpFrom(p, mhe.NewPublicKeyGenProtocol(p.BGV(tok)), domain, crs)
	if err != nil {
		return ring.Poly{}, err
	}
	crsCache.Lock()
	defer crsCache.Unlock()
	// The newest few epochs' (a node serves its active and previous one;
	// a threshold epoch has two polynomials).
	crsCache.entries = append([]crsEntry{{key, crp.Value.Q}}, crsCache.entries[:min(len(crsCache.entries), 7)]...)
	return crp.Value.Q, nil
}

type crsEntry struct {
	key  string
	poly ring.Poly
}

var crsCache struct {
	sync.Mutex
	entries []crsEntry
}
