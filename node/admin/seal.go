package admin

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// A sealed stream: a backup's copy of the store, which Badger's backup
// writes in the clear, encrypted under a key derived from the operator key
// (HKDF-SHA256, info "fedstat backup v1"). The stream is "FSBK1", a
// 16-byte random prefix, then chunks of a 4-byte big-endian length and
// XChaCha20-Poly1305(key, nonce = prefix || chunk number (8 bytes), chunk,
// additional data = one byte, 1 on the last chunk and 0 otherwise). The
// last chunk may be empty; a stream cut at a chunk boundary fails to open,
// as do reordered, repeated or changed chunks.

const (
	sealMagic = "FSBK1"
	sealChunk = 64 << 10
)

var errSealed = errors.New("admin: the backup's sealed store does not open (damaged, or another operator key)")

func backupKey(operatorKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, operatorKey, nil, "fedstat backup v1", chacha20poly1305.KeySize)
}

// sealWriter seals what is written to it; Close writes the last chunk.
type sealWriter struct {
	w    io.Writer
	aead interface {
		Seal(dst, nonce, pt, ad []byte) []byte
	}
	prefix [16]byte
	n      uint64
	buf    []byte
}

func newSealWriter(w io.Writer, operatorKey []byte) (*sealWriter, error) {
	k, err := backupKey(operatorKey)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	s := &sealWriter{w: w, aead: aead}
	if _, err := rand.Read(s.prefix[:]); err != nil {
		return nil, err
	}
	if _, err := w.Write(append([]byte(sealMagic), s.prefix[:]...)); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sealWriter) nonce() []byte {
	var n [24]byte
	copy(n[:], s.prefix[:])
	binary.BigEndian.PutUint64(n[16:], s.n)
	return n[:]
}

func (s *sealWriter) chunk(pt []byte, last bool) error {
	ad := []byte{0}
	if last {
		ad[0] = 1
	}
	ct := s.aead.Seal(nil, s.nonce(), pt, ad)
	s.n++
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(ct)))
	if _, err := s.w.Write(l[:]); err != nil {
		return err
	}
	_, err := s.w.Write(ct)
	return err
}

func (s *sealWriter) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for len(s.buf) > sealChunk {
		if err := s.chunk(s.buf[:sealChunk], false); err != nil {
			return 0, err
		}
		s.buf = s.buf[sealChunk:]
	}
	return len(p), nil
}

func (s *sealWriter) Close() error { return s.chunk(s.buf, true) }

// sealReader opens a sealed stream.
type sealReader struct {
	r    io.Reader
	aead interface {
		Open(dst, nonce, ct, ad []byte) ([]byte, error)
	}
	prefix [16]byte
	n      uint64
	buf    []byte
	done   bool
}

func newSealReader(r io.Reader, operatorKey []byte) (*sealReader, error) {
	k, err := backupKey(operatorKey)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, len(sealMagic)+16)
	if _, err := io.ReadFull(r, hdr); err != nil || string(hdr[:len(sealMagic)]) != sealMagic {
		return nil, fmt.Errorf("%w: no sealed-stream header", errSealed)
	}
	s := &sealReader{r: r, aead: aead}
	copy(s.prefix[:], hdr[len(sealMagic):])
	return s, nil
}

func (s *sealReader) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.done {
			return 0, io.EOF
		}
		var l [4]byte
		if _, err := io.ReadFull(s.r, l[:]); err != nil {
			return 0, fmt.Errorf("%w: cut short", errSealed)
		}
		size := binary.BigEndian.Uint32(l[:])
		if size > sealChunk+chacha20poly1305.Overhead {
			return 0, fmt.Errorf("%w: bad chunk length", errSealed)
		}
		ct := make([]byte, size)
		if _, err := io.ReadFull(s.r, ct); err != nil {
			return 0, fmt.Errorf("%w: cut short", errSealed)
		}
		var n [24]byte
		copy(n[:], s.prefix[:])
		binary.BigEndian.PutUint64(n[16:], s.n)
		pt, err := s.aead.Open(nil, n[:], ct, []byte{0})
		if err != nil {
			if pt, err = s.aead.Open(nil, n[:], ct, []byte{1}); err != nil {
				return 0, errSealed
			}
			s.done = true
		}
		s.n++
		s.buf = pt
	}
	k := copy(p, s.buf)
	s.buf = s.buf[k:]
	return k, nil
}
