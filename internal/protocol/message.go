package protocol

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// Every protocol message has the same shape, as every multiparty protocol
// of Lattigo's mhe package has: a kind (the envelope kind, one of the Kind
// constants), a binding (the query id, the key epoch and the node the
// message is signed by or, for an evaluate request, addressed to) that the
// Seal and Open functions of the kind build in one place, and a payload
// with its codec. For a kind X:
//
//	SealX(signer, <binding>, payload, now) (*typesv1.Signed, error)
//	OpenX(pub, signed, <binding>, window[, what the payload must be]) (payload, error)
//
// OpenX checks the signature under pub, the binding, the timestamp against
// the window (and the replay cache, when the window has one) and decodes the
// payload. Its errors say what is wrong without saying which message it was:
// each caller names the message and the node in its own words.

// Window is how a receiver judges when a message was signed: its clock now,
// how far from it a timestamp may be (MaxSkew, DefaultMaxSkew unless
// configured, the same on both sides), and, when Seen is set, a replay cache
// that refuses a message accepted before. A nil Seen is for messages a
// receiver may be shown again on purpose (partials and commitments on a
// retried release, the shares of a retried key ceremony): they are bound to
// their query id or epoch, and the receiver deduplicates them otherwise.
type Window struct {
	Now     time.Time
	MaxSkew time.Duration
	Seen    envelope.ReplayCache
}

// ErrMalformedPayload: a signed message whose payload does not decode to
// what its kind carries.
var ErrMalformedPayload = errors.New("malformed payload")

// kind is one kind of message: its envelope kind and its payload's codec.
type kind[T any] struct {
	name   string
	encode func(T) ([]byte, error)
	decode func([]byte) (T, error)
}

func (k kind[T]) seal(signer crypto.Signer, b envelope.Binding, v T, now time.Time) (*typesv1.Signed, error) {
	b.Kind = k.name
	payload, err := k.encode(v)
	if err != nil {
		return nil, err
	}
	env, err := envelope.Seal(signer, b, payload, now)
	if err != nil {
		return nil, err
	}
	return ToProto(env), nil
}

func (k kind[T]) open(pub crypto.PublicKey, s *typesv1.Signed, b envelope.Binding, w Window) (T, error) {
	var zero T
	b.Kind = k.name
	if _, err := envelope.Open(pub, FromProto(s), b, w.Now, w.MaxSkew, w.Seen); err != nil {
		return zero, err
	}
	v, err := k.decode(s.GetPayload())
	if err != nil {
		return zero, payloadError{err}
	}
	return v, nil
}

// openCommitment verifies a message of kind k sent without its payload (a
// commitment to it: the header signs the payload's SHA-256): the signature
// under pub, the binding b and the timestamp in w.
func (k kind[T]) openCommitment(pub crypto.PublicKey, s *typesv1.Signed, b envelope.Binding, w Window) error {
	b.Kind = k.name
	h, err := envelope.OpenHeader(pub, s.GetHeader(), s.GetSignature(), b)
	if err != nil {
		return err
	}
	return envelope.CheckTime(h, w.Now, w.MaxSkew)
}

// checkBinding checks that header is a header of kind k with binding b,
// verifying no signature.
func (k kind[T]) checkBinding(header []byte, b envelope.Binding) error {
	h, err := envelope.ParseHeader(header)
	if err != nil {
		return err
	}
	b.Kind = k.name
	if h.Binding != b {
		return fmt.Errorf("%w: a %s of %q, epoch %d, node %q, not a %s of %q, epoch %d, node %q", envelope.ErrBindingMismatch,
			h.Kind, h.QueryID, h.Epoch, h.NodeID, b.Kind, b.QueryID, b.Epoch, b.NodeID)
	}
	return nil
}

// payloadError is a payload that does not decode: it reads as the decoder's
// error and matches ErrMalformedPayload.
type payloadError struct{ err error }

func (e payloadError) Error() string   { return e.err.Error() }
func (e payloadError) Unwrap() []error { return []error{ErrMalformedPayload, e.err} }

// protoKind is a kind whose payload is a protobuf message.
func protoKind[T any, P interface {
	*T
	proto.Message
}](name string) kind[P] {
	return kind[P]{
		name:   name,
		encode: func(m P) ([]byte, error) { return proto.Marshal(m) },
		decode: func(b []byte) (P, error) {
			m := P(new(T))
			if err := proto.Unmarshal(b, m); err != nil {
				return nil, err
			}
			return m, nil
		},
	}
}

// bytesKind is a kind whose payload is carried as it is.
func bytesKind(name string) kind[[]byte] {
	id := func(b []byte) ([]byte, error) { return b, nil }
	return kind[[]byte]{name: name, encode: id, decode: id}
}

// The kinds of message of the protocol.
var (
	evaluateKind  = protoKind[nodev1.EvaluateBody](KindEvaluate)
	partialKind   = protoKind[nodev1.PartialPayload](KindPartial)
	commitKind    = bytesKind(KindReleaseCommit)
	keySwitchKind = protoKind[nodev1.KeySwitchPayload](KindKeySwitchShare)
	ckgKind       = bytesKind(KindCKGShare)
	ckgRevealKind = bytesKind(KindCKGReveal)
	thresholdKind = bytesKind(KindThresholdShare)
	keyCheckKind  = bytesKind(KindKeyCheck)
	imagesKind    = bytesKind(KindShamirImages)
	dealingKind   = bytesKind(KindDealingKey)
	installedKind = bytesKind(KindKeyInstalled)
)

// queryBinding is the binding of a message about query queryID of key
// epoch epoch signed by (or addressed to) node.
func queryBinding(queryID string, epoch uint64, node string) envelope.Binding {
	return envelope.Binding{QueryID: queryID, Epoch: epoch, NodeID: node}
}

// SealCommit signs node's commitment to the one partial set (digest,
// CommitDigest) that query queryID may be released over.
func SealCommit(signer crypto.Signer, queryID string, epoch uint64, node string, digest []byte, now time.Time) (*typesv1.Signed, error) {
	return commitKind.seal(signer, queryBinding(queryID, epoch, node), digest, now)
}

// OpenCommit verifies node's commitment for query queryID of epoch and
// returns the digest it commits to (the caller compares it with its own).
func OpenCommit(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window) ([]byte, error) {
	return commitKind.open(pub, s, queryBinding(queryID, epoch, node), w)
}

// SealKeySwitchShare signs node's key-switch share of the release of query
// queryID (one share per ciphertext of the sum). The same kind serves both
// steps of a two-step release: PREPARE keeps the signed share at the node,
// RELEASE hands it out.
func SealKeySwitchShare(signer crypto.Signer, queryID string, epoch uint64, node string, p *nodev1.KeySwitchPayload, now time.Time) (*typesv1.Signed, error) {
	return keySwitchKind.seal(signer, queryBinding(queryID, epoch, node), p, now)
}

// OpenKeySwitchShare verifies node's key-switch share of query queryID and
// returns its shares, which must be one per ciphertext (cts) of the sum. A
// payload that does not decode, or has another count, is
// ErrMalformedPayload.
func OpenKeySwitchShare(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window, cts int) ([][]byte, error) {
	p, err := keySwitchKind.open(pub, s, queryBinding(queryID, epoch, node), w)
	if errors.Is(err, ErrMalformedPayload) || (err == nil && len(p.GetShares()) != cts) {
		return nil, ErrMalformedPayload
	}
	if err != nil {
		return nil, err
	}
	return p.GetShares(), nil
}

// KeySwitchPayloadOf reads the payload of a key-switch share a node signed
// itself and kept (its release record), checking its binding to queryID,
// epoch and node but no signature or time: what the node made again must
// match it.
func KeySwitchPayloadOf(s *typesv1.Signed, queryID string, epoch uint64, node string) (*nodev1.KeySwitchPayload, error) {
	if err := keySwitchKind.checkBinding(s.GetHeader(), queryBinding(queryID, epoch, node)); err != nil {
		return nil, err
	}
	p, err := keySwitchKind.decode(s.GetPayload())
	if err != nil {
		return nil, payloadError{err}
	}
	return p, nil
}

// ErrShareOfAnother: a key-switch share signed as made for another partial
// set, another sum or another target key than the release it came back
// from.
var ErrShareOfAnother = errors.New("protocol: the key-switch share is of another release")

// OpenKeySwitchRelease is OpenKeySwitchShare for the coordinator of a
// release: it also checks what the share says it was made for (the commit
// digest of the partial set, the sum's digest for a compact release, the
// target key's digest) against the release it asked for, so that a wrong
// share names its decryptor when it arrives rather than when an analyst
// checks the release record. A share without those digests (made by a node
// of an earlier version) passes this check; the release record's check
// refuses it.
func OpenKeySwitchRelease(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window, cts int, commitDigest, sumDigest, targetDigest []byte) ([][]byte, error) {
	p, err := keySwitchKind.open(pub, s, queryBinding(queryID, epoch, node), w)
	if errors.Is(err, ErrMalformedPayload) || (err == nil && len(p.GetShares()) != cts) {
		return nil, ErrMalformedPayload
	}
	if err != nil {
		return nil, err
	}
	check := func(what string, got, want []byte) error {
		if len(got) > 0 && !bytes.Equal(got, want) {
			return fmt.Errorf("%w: its %s differs from this release's", ErrShareOfAnother, what)
		}
		return nil
	}
	if err := errors.Join(check("partial set", p.GetCommitDigest(), commitDigest), check("sum", p.GetSumDigest(), sumDigest),
		check("target key", p.GetTargetKeyDigest(), targetDigest)); err != nil {
		return nil, err
	}
	return p.GetShares(), nil
}

// SealCKGShare signs node's share of the collective public key of key
// epoch epoch.
func SealCKGShare(signer crypto.Signer, epoch uint64, node string, share []byte, now time.Time) (*typesv1.Signed, error) {
	return ckgKind.seal(signer, queryBinding(EpochQueryID(epoch), epoch, node), share, now)
}

// OpenCKGShare verifies node's share of the collective public key of epoch
// and returns it.
func OpenCKGShare(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, w Window) ([]byte, error) {
	return ckgKind.open(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
}

// KeySwitchProofContext is what the proof of node's key-switch share of
// the index-th ciphertext of a release of queryID in epoch is bound to: the
// partial set (commitDigest) and the target key (targetDigest).
func KeySwitchProofContext(queryID string, epoch uint64, node string, commitDigest, targetDigest []byte, index int) []byte {
	b := []byte("fedstat/keyswitch-proof/v1\x00")
	for _, f := range [][]byte{[]byte(queryID), []byte(node), commitDigest, targetDigest} {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint64(b, epoch)
	return binary.BigEndian.AppendUint64(b, uint64(index))
}

// CKGProofContext is what the proof of node's CKG share of epoch is bound
// to (collective.CKGShareProven): a proof made for one member or epoch does
// not verify for another.
func CKGProofContext(epoch uint64, node string) []byte {
	b := []byte("fedstat/ckg-proof/v1\x00")
	b = binary.BigEndian.AppendUint64(b, epoch)
	return append(b, node...)
}

// SealCKGReveal signs node's statement that it revealed its CKG share of
// epoch within the set of share commitments digest (CKGSetDigest), and in
// no other.
func SealCKGReveal(signer crypto.Signer, epoch uint64, node string, digest []byte, now time.Time) (*typesv1.Signed, error) {
	return ckgRevealKind.seal(signer, queryBinding(EpochQueryID(epoch), epoch, node), digest, now)
}

// OpenCKGReveal verifies node's reveal statement of epoch and returns the
// set digest it names.
func OpenCKGReveal(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, w Window) ([]byte, error) {
	return ckgRevealKind.open(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
}

// ErrKeyCheck: a committee member's CKG share failed the key check (the
// values a challenge under it encrypts are not what the member decrypts).
var ErrKeyCheck = errors.New("protocol: the CKG share failed the key check")

// KeyCheckDigest is what a committee member commits to when it answers a
// key-check challenge of epoch: the values it decrypted and a random nonce
// (32 bytes) that hides them until it opens the commitment.
func KeyCheckDigest(epoch uint64, node string, values []int64, nonce []byte) []byte {
	h := sha256.New()
	h.Write([]byte("fedstat/key-check/v1\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, epoch))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(node))))
	h.Write([]byte(node))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(values))))
	for _, v := range values {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(v)))
	}
	h.Write(nonce)
	return h.Sum(nil)
}

// SealKeyCheck signs node's commitment (KeyCheckDigest) to what the key
// check of epoch decrypted to.
func SealKeyCheck(signer crypto.Signer, epoch uint64, node string, digest []byte, now time.Time) (*typesv1.Signed, error) {
	return keyCheckKind.seal(signer, queryBinding(EpochQueryID(epoch), epoch, node), digest, now)
}

// OpenKeyCheck verifies node's key-check commitment of epoch and returns
// the digest.
func OpenKeyCheck(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, w Window) ([]byte, error) {
	return keyCheckKind.open(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
}

// OpenCKGCommitment verifies node's answer to KeyGen, the signed header of
// its CKG share of epoch without the share: the signature under pub, the
// binding and the timestamp in w (not the replay cache: a retried ceremony
// shows it again).
func OpenCKGCommitment(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, w Window) error {
	return ckgKind.openCommitment(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
}

// CheckCKGBinding checks that header is the header of node's CKG share of
// epoch, by its binding alone (no signature is checked).
func CheckCKGBinding(header []byte, epoch uint64, node string) error {
	return ckgKind.checkBinding(header, queryBinding(EpochQueryID(epoch), epoch, node))
}

// CKGSetDigest identifies the set of CKG shares of a key ceremony by their
// commitments: epoch and every share's node id, signed header and
// signature, in node order. A committee member reveals its share within
// one such set per epoch, and every member installs the key only when every
// committee member's reveal statement names the digest of the shares it is
// given.
func CKGSetDigest(epoch uint64, shares []*nodev1.NodeSigned) []byte {
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	field([]byte("fedstat/ckg-set/v1"))
	field(binary.BigEndian.AppendUint64(nil, epoch))
	ss := slices.Clone(shares)
	slices.SortFunc(ss, func(a, b *nodev1.NodeSigned) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
	for _, s := range ss {
		field([]byte(s.GetNodeId()))
		field(s.GetSigned().GetHeader())
		field(s.GetSigned().GetSignature())
	}
	return h.Sum(nil)
}

// dealtQueryID binds a threshold share to its recipient.
func dealtQueryID(to string) string { return "to:" + to }

// SealThresholdShare signs the Shamir share of key epoch epoch that node
// from dealt to node to (sealed: already encrypted to the recipient).
func SealThresholdShare(signer crypto.Signer, epoch uint64, from, to string, sealed []byte, now time.Time) (*typesv1.Signed, error) {
	return thresholdKind.seal(signer, queryBinding(dealtQueryID(to), epoch, from), sealed, now)
}

// OpenThresholdShare verifies the threshold share of epoch that from dealt
// to to, and returns it (still encrypted to the recipient).
func OpenThresholdShare(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, from, to string, w Window) ([]byte, error) {
	return thresholdKind.open(pub, s, queryBinding(dealtQueryID(to), epoch, from), w)
}

// SealShamirImages signs the images of the Shamir polynomial node dealt
// its share of key epoch epoch with (collective.ThresholdDealChecked).
func SealShamirImages(signer crypto.Signer, epoch uint64, node string, images []byte, now time.Time) (*typesv1.Signed, error) {
	return imagesKind.seal(signer, queryBinding(EpochQueryID(epoch), epoch, node), images, now)
}

// OpenShamirImages verifies node's signed Shamir images of epoch and
// returns them.
func OpenShamirImages(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, w Window) ([]byte, error) {
	return imagesKind.open(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
}

// SealDealingKey signs node's dealing key of epoch (an uncompressed P-256
// point: docs/crypto.md, "Checked dealing", Complaints).
func SealDealingKey(signer crypto.Signer, epoch uint64, node string, key []byte, now time.Time) (*typesv1.Signed, error) {
	return dealingKind.seal(signer, queryBinding(EpochQueryID(epoch), epoch, node), key, now)
}

// OpenDealingKey verifies node's signed dealing key of epoch and returns it.
func OpenDealingKey(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, w Window) (*ecdh.PublicKey, error) {
	b, err := dealingKind.open(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
	if err != nil {
		return nil, err
	}
	k, err := ecdh.P256().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("protocol: dealing key of %s: %w", node, err)
	}
	return k, nil
}

// KeyDigest is the digest of an epoch's public key (its encoding) that a
// committee member's statement that it installed the epoch names.
func KeyDigest(publicKey []byte) []byte {
	d := sha256.Sum256(append([]byte("fedstat/key-installed/v1\x00"), publicKey...))
	return d[:]
}

// SealKeyInstalled signs node's statement that it installed epoch, whose
// public key has digest (KeyDigest).
func SealKeyInstalled(signer crypto.Signer, epoch uint64, node string, digest []byte, now time.Time) (*typesv1.Signed, error) {
	return installedKind.seal(signer, queryBinding(EpochQueryID(epoch), epoch, node), digest, now)
}

// OpenKeyInstalled verifies node's statement that it installed epoch and
// returns the key digest it names.
func OpenKeyInstalled(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, w Window) ([]byte, error) {
	return installedKind.open(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
}

// OpenKeySwitchPayload is OpenKeySwitchShare returning the whole payload:
// the shares and what they are of (commit, sum and target key digests), for
// a check of a release record.
func OpenKeySwitchPayload(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window) (*nodev1.KeySwitchPayload, error) {
	return keySwitchKind.open(pub, s, queryBinding(queryID, epoch, node), w)
}
