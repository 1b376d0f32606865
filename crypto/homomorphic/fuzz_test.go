package homomorphic_test

import (
	"bytes"
	"testing"

	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// seeds returns real serialised objects of the test parameter set plus a
// few degenerate inputs.
func seeds(f *testing.F, objs ...interface{ MarshalBinary() ([]byte, error) }) {
	f.Helper()
	for _, o := range objs {
		b, err := o.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:32])         // header only
		f.Add(b[:len(b)-1])   // truncated
		f.Add(append(b, 0))   // trailing byte
		bad := bytes.Clone(b) // flipped kind
		bad[5] ^= 0xff
		f.Add(bad)
	}
	f.Add([]byte{})
	f.Add([]byte("FSHE"))
}

type unmarshaller func(homomorphic.Params, []byte) (interface{ MarshalBinary() ([]byte, error) }, error)

func fuzzRoundTrip(f *testing.F, un unmarshaller) {
	p := testParams(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := un(p, b)
		if err != nil {
			return
		}
		// Anything accepted re-encodes to the same bytes (canonical).
		out, err := obj.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted object does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatal("accepted encoding is not canonical")
		}
	})
}

func FuzzUnmarshalCiphertext(f *testing.F) {
	p := testParams(f)
	rk, _ := homomorphic.GenResultKey(p)
	cts, err := homomorphic.Encrypt(p, rk.Public(), []int64{1, -2, 3})
	if err != nil {
		f.Fatal(err)
	}
	seeds(f, cts[0], rk.Public())
	fuzzRoundTrip(f, func(p homomorphic.Params, b []byte) (interface{ MarshalBinary() ([]byte, error) }, error) {
		ct, err := homomorphic.UnmarshalCiphertext(p, b)
		if err != nil {
			return nil, err
		}
		// An accepted ciphertext is usable.
		if _, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{ct}, 1); err != nil {
			panic(err)
		}
		if err := homomorphic.Add(p, ct.Clone(), ct); err != nil {
			panic(err)
		}
		return ct, nil
	})
}

func FuzzUnmarshalPublicKey(f *testing.F) {
	p := testParams(f)
	rk, _ := homomorphic.GenResultKey(p)
	seeds(f, rk.Public(), rk)
	fuzzRoundTrip(f, func(p homomorphic.Params, b []byte) (interface{ MarshalBinary() ([]byte, error) }, error) {
		pk, err := homomorphic.UnmarshalPublicKey(p, b)
		if err != nil {
			return nil, err
		}
		if _, err := homomorphic.Encrypt(p, pk, []int64{1}); err != nil {
			return nil, err
		}
		return pk, nil
	})
}

func FuzzUnmarshalSecretKeyShare(f *testing.F) {
	p := testParams(f)
	sk, _ := homomorphic.GenSecretKeyShare(p)
	rk, _ := homomorphic.GenResultKey(p)
	seeds(f, sk, rk.Public())
	fuzzRoundTrip(f, func(p homomorphic.Params, b []byte) (interface{ MarshalBinary() ([]byte, error) }, error) {
		return homomorphic.UnmarshalSecretKeyShare(p, b)
	})
}

func FuzzUnmarshalResultKey(f *testing.F) {
	p := testParams(f)
	rk, _ := homomorphic.GenResultKey(p)
	seeds(f, rk, rk.Public())
	fuzzRoundTrip(f, func(p homomorphic.Params, b []byte) (interface{ MarshalBinary() ([]byte, error) }, error) {
		return homomorphic.UnmarshalResultKey(p, b)
	})
}
