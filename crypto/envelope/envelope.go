// Package envelope signs and verifies the messages that carry partial
// results, key-switch shares and key-generation shares, binding each one to
// its query, key epoch, sending node and kind, and to a timestamp and a
// random nonce so that the coordinator (or anyone on the path) cannot
// replay, mix or forge them.
//
// An Envelope is a canonical binary Header, the Payload, and a signature by
// the sender's identity key (ECDSA P-256 with SHA-256, or Ed25519) over a
// domain-separated encoding of the Header. The Header holds the SHA-256 of
// the payload, so the signature covers the payload too.
//
// The package uses only the standard library.
package envelope

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Errors returned by Open (wrapped with %w; match with errors.Is).
var (
	// ErrBadSignature: the signature does not verify under the given key, or
	// the payload does not match the signed digest.
	ErrBadSignature = errors.New("envelope: bad signature")
	// ErrBindingMismatch: the signed binding is not the expected one.
	ErrBindingMismatch = errors.New("envelope: binding mismatch")
	// ErrStale: the signed timestamp is further than maxSkew from now.
	ErrStale = errors.New("envelope: stale or future timestamp")
	// ErrReplay: the envelope was already accepted once.
	ErrReplay = errors.New("envelope: replayed")
	// ErrMalformed: the bytes are not a well-formed envelope or header, or
	// the key type is not supported.
	ErrMalformed = errors.New("envelope: malformed")
)

// Limits of the encoding.
const (
	// MaxFieldLen is the largest accepted QueryID, NodeID or Kind, in bytes.
	MaxFieldLen = 256
	// MaxSignatureLen is the largest accepted signature.
	MaxSignatureLen = 512
)

// Kinds of payload used by fedstat. Kind is free text; these are the
// conventional values.
const (
	KindPartial        = "partial"
	KindKeySwitchShare = "keyswitch-share"
	KindCKGShare       = "ckg-share"
	KindThresholdShare = "threshold-share"
)

// Binding is what a message is about and who sent it.
type Binding struct {
	QueryID string
	Epoch   uint64
	NodeID  string
	Kind    string
}

// Header is the signed part of an envelope.
type Header struct {
	Binding
	Digest    [32]byte // SHA-256 of the payload
	Timestamp time.Time
	Nonce     [16]byte
}

// Envelope is a signed message. Header is the canonical encoding of a
// Header (see MarshalHeader).
type Envelope struct {
	Header    []byte
	Payload   []byte
	Signature []byte
}

var (
	headerMagic   = [4]byte{'F', 'S', 'E', 'H'}
	envelopeMagic = [4]byte{'F', 'S', 'E', 'V'}
)

const (
	version      = 1
	sigDomain    = "fedstat/envelope/v1 signature\x00"
	replayDomain = "fedstat/envelope/v1 replay\x00"
)

// MarshalHeader returns the canonical encoding of h:
//
//	"FSEH" | version (1 byte) | u16 len | QueryID | u64 Epoch | u16 len |
//	NodeID | u16 len | Kind | Digest (32) | i64 unix-nano Timestamp |
//	Nonce (16)
//
// with big-endian integers. Exactly one encoding exists per Header.
func MarshalHeader(h *Header) ([]byte, error) {
	for _, s := range []string{h.QueryID, h.NodeID, h.Kind} {
		if len(s) > MaxFieldLen {
			return nil, fmt.Errorf("%w: binding field of %d bytes (max %d)", ErrMalformed, len(s), MaxFieldLen)
		}
	}
	b := make([]byte, 0, 5+6+8+len(h.QueryID)+len(h.NodeID)+len(h.Kind)+32+8+16)
	b = append(b, headerMagic[:]...)
	b = append(b, version)
	b = appendString(b, h.QueryID)
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = appendString(b, h.NodeID)
	b = appendString(b, h.Kind)
	b = append(b, h.Digest[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Timestamp.UnixNano()))
	b = append(b, h.Nonce[:]...)
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// ParseHeader decodes a canonical header. It rejects trailing bytes and
// over-long fields.
func ParseHeader(b []byte) (*Header, error) {
	r := reader{b: b}
	var h Header
	if [4]byte(r.take(4)) != headerMagic || r.byte() != version {
		return nil, fmt.Errorf("%w: bad header magic or version", ErrMalformed)
	}
	h.QueryID = r.string()
	h.Epoch = r.u64()
	h.NodeID = r.string()
	h.Kind = r.string()
	copy(h.Digest[:], r.take(32))
	ts := int64(r.u64())
	copy(h.Nonce[:], r.take(16))
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing header bytes", ErrMalformed, len(r.b))
	}
	h.Timestamp = time.Unix(0, ts).UTC()
	return &h, nil
}

type reader struct {
	b   []byte
	err error
}

var zeros [32]byte

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return zeros[:n]
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return zeros[:n]
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte  { return r.take(1)[0] }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

func (r *reader) string() string {
	n := int(binary.BigEndian.Uint16(r.take(2)))
	if n > MaxFieldLen {
		if r.err == nil {
			r.err = fmt.Errorf("%w: field of %d bytes", ErrMalformed, n)
		}
		return ""
	}
	if r.err != nil {
		return ""
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Seal signs payload for binding b at time now with a fresh random nonce.
// signer must be an ECDSA P-256 key or an Ed25519 key (for example the
// node's TLS key).
func Seal(signer crypto.Signer, b Binding, payload []byte, now time.Time) (*Envelope, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: nil signer", ErrMalformed)
	}
	h := Header{Binding: b, Digest: sha256.Sum256(payload), Timestamp: now}
	if _, err := rand.Read(h.Nonce[:]); err != nil {
		return nil, fmt.Errorf("envelope: nonce: %w", err)
	}
	hb, err := MarshalHeader(&h)
	if err != nil {
		return nil, err
	}
	msg := signedMessage(hb)
	var sig []byte
	switch pub := signer.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA curve %s (want P-256)", ErrMalformed, pub.Curve.Params().Name)
		}
		d := sha256.Sum256(msg)
		sig, err = signer.Sign(rand.Reader, d[:], crypto.SHA256)
	case ed25519.PublicKey:
		sig, err = signer.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		return nil, fmt.Errorf("%w: unsupported signer key %T", ErrMalformed, pub)
	}
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	return &Envelope{Header: hb, Payload: bytes.Clone(payload), Signature: sig}, nil
}

func signedMessage(header []byte) []byte {
	return append([]byte(sigDomain), header...)
}

// Open verifies e and returns its header. It checks, in this order: the
// header's encoding (ErrMalformed), the signature over the header under pub
// (ErrBadSignature), the payload digest (ErrBadSignature), that the binding
// equals want (ErrBindingMismatch), that the timestamp is within maxSkew of
// now (ErrStale), and finally that the envelope was not accepted before
// (ErrReplay). Only envelopes that passed every other check are recorded in
// seen, so forged or stale messages cannot fill the cache.
//
// The replay key is the first 16 bytes of SHA-256 over the signed header
// (which contains the nonce), so one node cannot burn another node's
// nonces. seen must remember entries for at least 2*maxSkew; a nil seen
// skips the replay check (only for callers that deduplicate otherwise).
func Open(pub crypto.PublicKey, e *Envelope, want Binding, now time.Time, maxSkew time.Duration, seen ReplayCache) (*Header, error) {
	if e == nil {
		return nil, fmt.Errorf("%w: nil envelope", ErrMalformed)
	}
	h, err := ParseHeader(e.Header)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(pub, e.Header, e.Signature); err != nil {
		return nil, err
	}
	if sha256.Sum256(e.Payload) != h.Digest {
		return nil, fmt.Errorf("%w: payload does not match the signed digest", ErrBadSignature)
	}
	if h.Binding != want {
		return nil, fmt.Errorf("%w: got %s, want %s", ErrBindingMismatch, describe(h.Binding), describe(want))
	}
	if err := CheckTime(h, now, maxSkew); err != nil {
		return nil, err
	}
	if seen != nil && seen.Seen(replayKey(e.Header), h.Timestamp) {
		return nil, ErrReplay
	}
	return h, nil
}

func replayKey(header []byte) [16]byte {
	s := sha256.Sum256(append([]byte(replayDomain), header...))
	return [16]byte(s[:16])
}

func describe(b Binding) string {
	return fmt.Sprintf("{query %q epoch %d node %q kind %q}", b.QueryID, b.Epoch, b.NodeID, b.Kind)
}

// MarshalBinary encodes the envelope as "FSEV" | version | three
// uvarint-length-prefixed fields (header, payload, signature).
func (e *Envelope) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 5+3*binary.MaxVarintLen64+len(e.Header)+len(e.Payload)+len(e.Signature))
	b = append(b, envelopeMagic[:]...)
	b = append(b, version)
	for _, f := range [][]byte{e.Header, e.Payload, e.Signature} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

// UnmarshalEnvelope decodes an envelope written by MarshalBinary. The fields
// alias b.
func UnmarshalEnvelope(b []byte) (*Envelope, error) {
	if len(b) < 5 || [4]byte(b[:4]) != envelopeMagic || b[4] != version {
		return nil, fmt.Errorf("%w: bad envelope magic or version", ErrMalformed)
	}
	b = b[5:]
	var fields [3][]byte
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || k != uvarintLen(n) || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: bad length of field %d", ErrMalformed, i)
		}
		fields[i] = b[k : k+int(n)]
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b))
	}
	return &Envelope{Header: fields[0], Payload: fields[1], Signature: fields[2]}, nil
}

func uvarintLen(n uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], n)
}

// OpenHeader verifies a header signed without its payload at hand: the
// header's encoding, the signature under pub and the binding (want). It
// returns the header, whose Digest is the payload's SHA-256. Neither the
// timestamp nor replay is checked: it is for records checked after the fact.
func OpenHeader(pub crypto.PublicKey, header, sig []byte, want Binding) (*Header, error) {
	h, err := ParseHeader(header)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(pub, header, sig); err != nil {
		return nil, err
	}
	if h.Binding != want {
		return nil, fmt.Errorf("%w: got %s, want %s", ErrBindingMismatch, describe(h.Binding), describe(want))
	}
	return h, nil
}

// CheckTime checks that h was signed within maxSkew of now (ErrStale), as
// Open does; with OpenHeader it checks a header sent without its payload.
func CheckTime(h *Header, now time.Time, maxSkew time.Duration) error {
	if d := now.Sub(h.Timestamp); d > maxSkew || d < -maxSkew {
		return fmt.Errorf("%w: signed at %s, now %s, max skew %s", ErrStale, h.Timestamp.Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), maxSkew)
	}
	return nil
}

// verifySignature checks sig over header under pub.
func verifySignature(pub crypto.PublicKey, header, sig []byte) error {
	if len(sig) == 0 || len(sig) > MaxSignatureLen {
		return fmt.Errorf("%w: signature of %d bytes", ErrBadSignature, len(sig))
	}
	msg := signedMessage(header)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA key not on P-256", ErrMalformed)
		}
		d := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(k, d[:], sig) {
			return ErrBadSignature
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 key of %d bytes", ErrMalformed, len(k))
		}
		if !ed25519.Verify(k, msg, sig) {
			return ErrBadSignature
		}
	default:
		return fmt.Errorf("%w: unsupported public key %T", ErrMalformed, pub)
	}
	return nil
}
