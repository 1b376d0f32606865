package protocol_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/protocol"
)

// TestDealingSecretOpensOneShare: the secret a recipient reveals for a
// share sealed to it opens that share for anyone holding its certificate,
// and nothing else: a secret off by one bit, the secret of another share
// sealed to the same recipient, another info (epoch, dealer, recipient)
// and another recipient's certificate are ErrSecretRefused.
func TestDealingSecretOpensOneShare(t *testing.T) {
	key, cert := testCert(t)
	_, otherCert := testCert(t)
	seal := func(info []byte, pt string) []byte {
		t.Helper()
		pub, err := key.PublicKey.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		pk, err := hpke.NewDHKEMPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, []byte(pt))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	info := protocol.ThresholdShareInfo(4, "node-3", "node-1")
	sealed := seal(info, "the share node-3 dealt node-1")
	second := seal(info, "another share")
	dh, err := protocol.DealingSecret(key, sealed)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := protocol.OpenRevealed(cert, dh, info, sealed)
	if err != nil || string(pt) != "the share node-3 dealt node-1" {
		t.Fatalf("the revealed secret opened %q, %v", pt, err)
	}
	flipped := append([]byte(nil), dh...)
	flipped[0] ^= 1
	dh2, err := protocol.DealingSecret(key, second)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		cert        *x509.Certificate
		dh, info, s []byte
	}{
		"a secret off by one bit":      {cert, flipped, info, sealed},
		"another share's secret":       {cert, dh2, info, sealed},
		"this secret, the other share": {cert, dh, info, second},
		"another info":                 {cert, dh, protocol.ThresholdShareInfo(5, "node-3", "node-1"), sealed},
		"another recipient":            {otherCert, dh, info, sealed},
		"a truncated share":            {cert, dh, info, sealed[:40]},
	} {
		if _, err := protocol.OpenRevealed(c.cert, c.dh, c.info, c.s); !errors.Is(err, protocol.ErrSecretRefused) {
			t.Errorf("%s: %v, want ErrSecretRefused", name, err)
		}
	}
}

func testCert(t testing.TB) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node-1"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// FuzzOpenRevealed: a revealed secret and a sealed share of any bytes never
// panic, and open only as the recipient's true secret opens the sealed
// share the dealer made (any other pair is ErrSecretRefused or an error).
func FuzzOpenRevealed(f *testing.F) {
	key, cert := testCert(f)
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		f.Fatal(err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	info := protocol.ThresholdShareInfo(1, "node-2", "node-1")
	sealed, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, []byte("share"))
	if err != nil {
		f.Fatal(err)
	}
	dh, err := protocol.DealingSecret(key, sealed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(dh, sealed)
	f.Add(dh[:31], sealed)
	f.Add(dh, sealed[:65])
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, d, s []byte) {
		pt, err := protocol.OpenRevealed(cert, d, info, s)
		if err != nil {
			return
		}
		if string(pt) != "share" || !bytes.Equal(d, dh) || !bytes.Equal(s, sealed) {
			t.Fatalf("opened %q with a secret or share other than the true ones", pt)
		}
	})
}
