package protocol_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

func TestMain(m *testing.M) {
	homomorphic.AllowInsecureForTests()
	os.Exit(m.Run())
}

// t0 is the time the messages are sealed and judged at: now, because the
// replay cache ages its entries by the real clock (a fixed date here made
// the test fail an hour after it).
var t0 = time.Now().UTC().Truncate(time.Second)

func key(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// window is a receiver at t0 with the default skew and no replay cache.
func window() protocol.Window { return protocol.Window{Now: t0, MaxSkew: protocol.DefaultMaxSkew} }

// kindCase is one kind of message with fixed binding fields: seal makes it,
// open opens it with the same binding and checks the payload came back,
// and others open it under every other binding (each must be refused).
type kindCase struct {
	name   string
	seal   func(crypto.Signer, time.Time) (*typesv1.Signed, error)
	open   func(crypto.PublicKey, *typesv1.Signed, protocol.Window) error
	others map[string]func(crypto.PublicKey, *typesv1.Signed, protocol.Window) error
}

func payloadIs(got, want []byte) error {
	if !bytes.Equal(got, want) {
		return errors.New("payload changed")
	}
	return nil
}

func kinds() []kindCase {
	digest := bytes.Repeat([]byte{7}, 32)
	share := []byte("a CKG share")
	sealed := []byte("an HPKE ciphertext")
	ks := &nodev1.KeySwitchPayload{Shares: [][]byte{[]byte("share 0"), []byte("share 1")}}
	return []kindCase{
		{
			name: "release commitment",
			seal: func(s crypto.Signer, now time.Time) (*typesv1.Signed, error) {
				return protocol.SealCommit(s, "q-1", 3, "node-1", digest, now)
			},
			open: func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
				got, err := protocol.OpenCommit(pub, s, "q-1", 3, "node-1", w)
				if err != nil {
					return err
				}
				return payloadIs(got, digest)
			},
			others: map[string]func(crypto.PublicKey, *typesv1.Signed, protocol.Window) error{
				"query id": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCommit(pub, s, "q-2", 3, "node-1", w)
					return err
				},
				"epoch": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCommit(pub, s, "q-1", 4, "node-1", w)
					return err
				},
				"node": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCommit(pub, s, "q-1", 3, "node-2", w)
					return err
				},
				"kind (as a partial)": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenPartial(pub, s, "q-1", 3, "node-1", w, protocol.PartialShape{})
					return err
				},
			},
		},
		{
			name: "key-switch share",
			seal: func(s crypto.Signer, now time.Time) (*typesv1.Signed, error) {
				return protocol.SealKeySwitchShare(s, "q-1", 3, "node-1", ks, now)
			},
			open: func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
				got, err := protocol.OpenKeySwitchShare(pub, s, "q-1", 3, "node-1", w, 2)
				if err != nil {
					return err
				}
				if len(got) != 2 || !bytes.Equal(got[1], ks.Shares[1]) {
					return errors.New("shares changed")
				}
				return nil
			},
			others: map[string]func(crypto.PublicKey, *typesv1.Signed, protocol.Window) error{
				"query id": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenKeySwitchShare(pub, s, "q-2", 3, "node-1", w, 2)
					return err
				},
				"epoch": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenKeySwitchShare(pub, s, "q-1", 2, "node-1", w, 2)
					return err
				},
				"node": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenKeySwitchShare(pub, s, "q-1", 3, "node-3", w, 2)
					return err
				},
				"kind (as a commitment)": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCommit(pub, s, "q-1", 3, "node-1", w)
					return err
				},
			},
		},
		{
			name: "CKG share",
			seal: func(s crypto.Signer, now time.Time) (*typesv1.Signed, error) {
				return protocol.SealCKGShare(s, 3, "node-1", share, now)
			},
			open: func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
				got, err := protocol.OpenCKGShare(pub, s, 3, "node-1", w)
				if err != nil {
					return err
				}
				return payloadIs(got, share)
			},
			others: map[string]func(crypto.PublicKey, *typesv1.Signed, protocol.Window) error{
				"epoch": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCKGShare(pub, s, 4, "node-1", w)
					return err
				},
				"node": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCKGShare(pub, s, 3, "node-2", w)
					return err
				},
				"kind (as a commitment of the epoch's query id)": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCommit(pub, s, protocol.EpochQueryID(3), 3, "node-1", w)
					return err
				},
			},
		},
		{
			name: "dealt threshold share",
			seal: func(s crypto.Signer, now time.Time) (*typesv1.Signed, error) {
				return protocol.SealThresholdShare(s, 3, "node-1", "node-2", sealed, now)
			},
			open: func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
				got, err := protocol.OpenThresholdShare(pub, s, 3, "node-1", "node-2", w)
				if err != nil {
					return err
				}
				return payloadIs(got, sealed)
			},
			others: map[string]func(crypto.PublicKey, *typesv1.Signed, protocol.Window) error{
				"recipient": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenThresholdShare(pub, s, 3, "node-1", "node-3", w)
					return err
				},
				"sender": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenThresholdShare(pub, s, 3, "node-3", "node-2", w)
					return err
				},
				"epoch": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenThresholdShare(pub, s, 2, "node-1", "node-2", w)
					return err
				},
				"kind (as a CKG share)": func(pub crypto.PublicKey, s *typesv1.Signed, w protocol.Window) error {
					_, err := protocol.OpenCKGShare(pub, s, 3, "node-1", w)
					return err
				},
			},
		},
	}
}

// TestMessageKinds: every kind of message opens under its own binding and
// key, within the window; and is refused under any other binding (query id,
// epoch, node, recipient, or as another kind), under another key, with its
// payload or header changed, outside the window, and replayed into a cache.
func TestMessageKinds(t *testing.T) {
	signer, other := key(t), key(t)
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			s, err := k.seal(signer, t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.open(signer.Public(), s, window()); err != nil {
				t.Fatalf("round trip: %v", err)
			}
			// The same message through its wire form.
			b, err := proto.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var wire typesv1.Signed
			if err := proto.Unmarshal(b, &wire); err != nil {
				t.Fatal(err)
			}
			if err := k.open(signer.Public(), &wire, window()); err != nil {
				t.Fatalf("round trip through the wire form: %v", err)
			}
			for name, open := range k.others {
				if err := open(signer.Public(), s, window()); !errors.Is(err, envelope.ErrBindingMismatch) {
					t.Errorf("opened under another %s: %v, want a binding mismatch", name, err)
				}
			}
			if err := k.open(other.Public(), s, window()); !errors.Is(err, envelope.ErrBadSignature) {
				t.Errorf("another key: %v, want a bad signature", err)
			}
			changed := proto.Clone(s).(*typesv1.Signed)
			changed.Payload = append(changed.Payload, 0)
			if err := k.open(signer.Public(), changed, window()); !errors.Is(err, envelope.ErrBadSignature) {
				t.Errorf("payload changed: %v, want a bad signature", err)
			}
			changed = proto.Clone(s).(*typesv1.Signed)
			changed.Header = changed.Header[:len(changed.Header)-1]
			if err := k.open(signer.Public(), changed, window()); !errors.Is(err, envelope.ErrMalformed) {
				t.Errorf("header cut: %v, want malformed", err)
			}
			// The window: DefaultMaxSkew either way is in, beyond it is out.
			for _, d := range []time.Duration{protocol.DefaultMaxSkew, -protocol.DefaultMaxSkew} {
				w := window()
				w.Now = t0.Add(d)
				if err := k.open(signer.Public(), s, w); err != nil {
					t.Errorf("opened %s after it was signed: %v", d, err)
				}
				w.Now = t0.Add(d + d/100)
				if err := k.open(signer.Public(), s, w); !errors.Is(err, envelope.ErrStale) {
					t.Errorf("opened %s after it was signed: %v, want stale", d+d/100, err)
				}
			}
			// With a replay cache, once only.
			w := window()
			w.Seen = envelope.NewMemoryReplayCache(24 * 365 * time.Hour)
			if err := k.open(signer.Public(), s, w); err != nil {
				t.Fatal(err)
			}
			if err := k.open(signer.Public(), s, w); !errors.Is(err, envelope.ErrReplay) {
				t.Errorf("second time into the same cache: %v, want a replay", err)
			}
		})
	}
}

// TestKeySwitchShareCount: a key-switch share must hold one share per
// ciphertext of the sum, and a payload that does not decode is malformed.
func TestKeySwitchShareCount(t *testing.T) {
	signer := key(t)
	s, err := protocol.SealKeySwitchShare(signer, "q-1", 3, "node-1", &nodev1.KeySwitchPayload{Shares: [][]byte{{1}, {2}}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, cts := range []int{1, 3} {
		if _, err := protocol.OpenKeySwitchShare(signer.Public(), s, "q-1", 3, "node-1", window(), cts); !errors.Is(err, protocol.ErrMalformedPayload) ||
			err.Error() != "malformed payload" {
			t.Errorf("2 shares for %d ciphertexts: %v, want malformed payload", cts, err)
		}
	}
	garbage := resealed(t, signer, s, []byte{0xff, 0xff, 0xff})
	if _, err := protocol.OpenKeySwitchShare(signer.Public(), garbage, "q-1", 3, "node-1", window(), 2); !errors.Is(err, protocol.ErrMalformedPayload) {
		t.Errorf("a payload that does not decode: %v, want malformed payload", err)
	}
}

// resealed signs payload under the binding of s, as a member that signs
// whatever it likes would.
func resealed(t *testing.T, signer crypto.Signer, s *typesv1.Signed, payload []byte) *typesv1.Signed {
	t.Helper()
	h, err := envelope.ParseHeader(s.GetHeader())
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Seal(signer, h.Binding, payload, h.Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	return protocol.ToProto(env)
}

// TestEvaluateRequest: the coordinator's request opens at the node it is
// addressed to, once, within the window, with a body that matches its
// binding; everything else is refused with the messages the node shows.
func TestEvaluateRequest(t *testing.T) {
	coord := key(t)
	body := &nodev1.EvaluateBody{QueryId: "q-1", Epoch: 3, Analyst: "ann", Role: "analyst", Spec: &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients"}}
	req, err := protocol.SealEvaluate(coord, "node-1", body, t0)
	if err != nil {
		t.Fatal(err)
	}
	w := window()
	w.Seen = envelope.NewMemoryReplayCache(time.Hour)
	got, err := protocol.OpenEvaluate(coord.Public(), req, "node-1", w)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, body) {
		t.Fatalf("body %v, want %v", got, body)
	}
	if _, err := protocol.OpenEvaluate(coord.Public(), req, "node-1", w); !errors.Is(err, envelope.ErrReplay) || strings.HasPrefix(err.Error(), "evaluate request") {
		t.Errorf("the same request again: %v, want the envelope's replay error", err)
	}
	if _, err := protocol.OpenEvaluate(coord.Public(), req, "node-2", window()); err == nil || err.Error() != "evaluate request addressed to node-1 (evaluate)" {
		t.Errorf("at another node: %v", err)
	}
	late := window()
	late.Now = t0.Add(protocol.DefaultMaxSkew + time.Second)
	if _, err := protocol.OpenEvaluate(coord.Public(), req, "node-1", late); !errors.Is(err, envelope.ErrStale) || strings.HasPrefix(err.Error(), "evaluate request") {
		t.Errorf("stale: %v, want the envelope's stale error", err)
	}
	if _, err := protocol.OpenEvaluate(key(t).Public(), req, "node-1", window()); !errors.Is(err, envelope.ErrBadSignature) || !strings.HasPrefix(err.Error(), "evaluate request: ") {
		t.Errorf("another coordinator's key: %v", err)
	}
	if _, err := protocol.OpenEvaluate(coord.Public(), &nodev1.EvaluateRequest{}, "node-1", window()); !errors.Is(err, envelope.ErrMalformed) || !strings.HasPrefix(err.Error(), "evaluate request: ") {
		t.Errorf("no request: %v", err)
	}
	// A body for another query under this binding.
	other, _ := proto.Marshal(&nodev1.EvaluateBody{QueryId: "q-2", Epoch: 3})
	mismatch := &nodev1.EvaluateRequest{Request: resealed(t, coord, req.GetRequest(), other)}
	if _, err := protocol.OpenEvaluate(coord.Public(), mismatch, "node-1", window()); err == nil || err.Error() != "evaluate request body does not match its binding" {
		t.Errorf("a body for another query: %v", err)
	}
	garbage := &nodev1.EvaluateRequest{Request: resealed(t, coord, req.GetRequest(), []byte{0xff, 0xff})}
	if _, err := protocol.OpenEvaluate(coord.Public(), garbage, "node-1", window()); !errors.Is(err, protocol.ErrMalformedPayload) || !strings.HasPrefix(err.Error(), "evaluate request: ") {
		t.Errorf("a body that does not decode: %v", err)
	}
	// The deprecated name seals the same request.
	old, err := protocol.SignEvaluate(coord, "node-1", body, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.OpenEvaluate(coord.Public(), old, "node-1", window()); err != nil {
		t.Errorf("SignEvaluate: %v", err)
	}
}

// TestKindsAreWireValues pins the envelope kinds: every signed message on
// the wire and in the nodes' stores carries one.
func TestKindsAreWireValues(t *testing.T) {
	for got, want := range map[string]string{
		protocol.KindCKGShare: "ckg-share", protocol.KindThresholdShare: "threshold-share", protocol.KindEvaluate: "evaluate",
		protocol.KindPartial: "partial", protocol.KindKeySwitchShare: "keyswitch-share", protocol.KindReleaseCommit: "release-commit",
		protocol.KindShamirImages: "shamir-images",
	} {
		if got != want {
			t.Errorf("kind %q, want %q", got, want)
		}
	}
	signer := key(t)
	s, err := protocol.SealThresholdShare(signer, 5, "node-1", "node-2", []byte("x"), t0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := envelope.ParseHeader(s.GetHeader())
	if err != nil {
		t.Fatal(err)
	}
	if want := (envelope.Binding{QueryID: "to:node-2", Epoch: 5, NodeID: "node-1", Kind: "threshold-share"}); h.Binding != want {
		t.Errorf("threshold share bound to %+v, want %+v", h.Binding, want)
	}
	s, err = protocol.SealCKGShare(signer, 5, "node-1", []byte("x"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ = envelope.ParseHeader(s.GetHeader()); h.Binding != (envelope.Binding{QueryID: "epoch-5", Epoch: 5, NodeID: "node-1", Kind: "ckg-share"}) {
		t.Errorf("CKG share bound to %+v", h.Binding)
	}
}

// TestKeySwitchShareOfAnotherRelease: the coordinator refuses, as it
// arrives, a share that its decryptor signed as made for another partial
// set, sum or target key, and names which; a share without those digests
// (an earlier node version) still opens.
func TestKeySwitchShareOfAnotherRelease(t *testing.T) {
	signer := key(t)
	commit, sum, target := []byte("commit-digest"), []byte("sum-digest"), protocol.TargetKeyDigest([]byte("target"))
	seal := func(p *nodev1.KeySwitchPayload) *typesv1.Signed {
		t.Helper()
		p.Shares = [][]byte{{1}}
		s, err := protocol.SealKeySwitchShare(signer, "q-1", 3, "node-1", p, t0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	open := func(s *typesv1.Signed) error {
		_, err := protocol.OpenKeySwitchRelease(signer.Public(), s, "q-1", 3, "node-1", window(), 1, commit, sum, target)
		return err
	}
	if err := open(seal(&nodev1.KeySwitchPayload{CommitDigest: commit, SumDigest: sum, TargetKeyDigest: target})); err != nil {
		t.Fatalf("the share of this release: %v", err)
	}
	if err := open(seal(&nodev1.KeySwitchPayload{})); err != nil {
		t.Fatalf("a share without digests (an earlier node): %v", err)
	}
	for what, p := range map[string]*nodev1.KeySwitchPayload{
		"partial set": {CommitDigest: []byte("another set"), SumDigest: sum, TargetKeyDigest: target},
		"sum":         {CommitDigest: commit, SumDigest: []byte("another sum"), TargetKeyDigest: target},
		"target key":  {CommitDigest: commit, SumDigest: sum, TargetKeyDigest: protocol.TargetKeyDigest([]byte("another key"))},
	} {
		err := open(seal(p))
		if !errors.Is(err, protocol.ErrShareOfAnother) || !strings.Contains(err.Error(), what) {
			t.Errorf("a share of another %s: %v, want ErrShareOfAnother naming it", what, err)
		}
	}
}
