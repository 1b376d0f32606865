// Package keystore keeps a node's secret key material (its share of the
// collective secret key for each key epoch) sealed on disk: files of mode
// 0600 in a 0700 directory, checked at every load, and encrypted with
// XChaCha20-Poly1305 under the operator's key when one is configured.
//
// Secret shares never leave the node: nothing in this package sends, logs or
// formats them.
//
// # Files
//
// A secret NAME is stored in NAME.secret, in one of these forms:
//
//   - "FSK1S", a 24-byte nonce, then XChaCha20-Poly1305(operator key,
//     nonce, secret, additional data NAME): sealed; damage, truncation, a
//     file copied under another name and a wrong key all fail to
//     authenticate.
//   - "FSK2P", SHA-256(uint32 length of NAME, NAME, secret), then the secret:
//     plain (no operator key), with a checksum that shows damage,
//     truncation and a file copied under another name.
//   - "FSK1P" then the secret: plain, as written before the checksum was
//     added; read as is (damage to it cannot be seen).
//
// Every problem with a file is a *FileError naming the file and saying
// what is wrong (missing, readable by others, unreadable, damaged, not
// authentic).
package keystore

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// Errors. Problems with a secret file come as a *FileError whose Kind is
// one of ErrNotFound, ErrInsecure, ErrUnreadable, ErrDamaged, ErrSealed;
// errors.Is matches the Kind.
var (
	ErrInsecure = errors.New("keystore: secret file readable by group or others")
	ErrNotFound = errors.New("keystore: no such secret")
	ErrSealed   = errors.New("keystore: cannot open sealed secret (wrong or missing operator key?)")
	ErrBadKey   = errors.New("keystore: operator key file must hold 32 bytes, raw or as 64 hex digits")
	// ErrDamaged: the file is truncated, has an unknown header or fails its
	// checksum.
	ErrDamaged = errors.New("keystore: secret file damaged")
	// ErrUnreadable: the file could not be read (permissions, I/O error).
	ErrUnreadable = errors.New("keystore: secret file unreadable")
)

// FileError is a problem with one secret file.
type FileError struct {
	// Name is the secret's name, Path its file.
	Name, Path string
	// Kind is ErrNotFound, ErrInsecure, ErrUnreadable, ErrDamaged or
	// ErrSealed.
	Kind error
	// Problem says what is wrong, for the operator.
	Problem string
}

func (e *FileError) Error() string { return fmt.Sprintf("keystore: %s: %s", e.Path, e.Problem) }

// Is makes errors.Is(err, e.Kind) true.
func (e *FileError) Is(target error) bool { return target == e.Kind }

func (s *Store) fileErr(name string, kind error, format string, args ...any) *FileError {
	return &FileError{Name: name, Path: s.path(name), Kind: kind, Problem: fmt.Sprintf(format, args...)}
}

const (
	magicPlain, magicSealed, magicPlainSum = "FSK1P", "FSK1S", "FSK2P"
	magicLen                               = 5
)

// plainSum is the checksum of a plain secret, bound to its name.
func plainSum(name string, secret []byte) []byte {
	h := sha256.New()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(name)))
	h.Write(n[:])
	h.Write([]byte(name))
	h.Write(secret)
	return h.Sum(nil)
}

// Store is a directory of sealed secrets.
type Store struct {
	dir string
	key []byte // nil: no encryption at rest
}

// Open returns the store in dir (created 0700 if missing). key, when not
// nil, is the 32-byte operator key that encrypts secrets at rest. Open checks
// every existing secret file's mode and refuses to start if any is readable
// by group or others.
func Open(dir string, key []byte) (*Store, error) {
	if key != nil && len(key) != chacha20poly1305.KeySize {
		return nil, ErrBadKey
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	s := &Store{dir: dir, key: key}
	if err := s.CheckModes(); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckModes verifies that the directory and every secret file are private.
func (s *Store) CheckModes() error {
	st, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: directory %s has mode %v; run chmod 700 %s", ErrInsecure, s.dir, st.Mode().Perm(), s.dir)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".secret") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			p := filepath.Join(s.dir, e.Name())
			return fmt.Errorf("%w: %s has mode %v; run chmod 600 %s", ErrInsecure, p, info.Mode().Perm(), p)
		}
	}
	return nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name+".secret") }

// Put writes secret under name atomically (temporary file, fsync, rename).
func (s *Store) Put(name string, secret []byte) error {
	var out []byte
	if s.key == nil {
		out = append([]byte(magicPlainSum), plainSum(name, secret)...)
		out = append(out, secret...)
	} else {
		aead, err := chacha20poly1305.NewX(s.key)
		if err != nil {
			return err
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		out = append([]byte(magicSealed), nonce...)
		out = aead.Seal(out, nonce, secret, []byte(name))
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: %w", err)
	}
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return os.Rename(tmp.Name(), s.path(name))
}

// Delete removes the secret stored under name, durably (the directory is
// synced), so that it cannot be read again after a crash. A secret that is
// not there is no error.
func (s *Store) Delete(name string) error {
	if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keystore: %w", err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}

// Get reads the secret stored under name, checking the file's mode first.
// Problems with the file are a *FileError naming it.
func (s *Store) Get(name string) ([]byte, error) {
	p := s.path(name)
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, s.fileErr(name, ErrNotFound, "missing: no such secret")
	}
	if err != nil {
		return nil, s.fileErr(name, ErrUnreadable, "cannot read: %v", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, s.fileErr(name, ErrInsecure, "readable by group or others (mode %v); run chmod 600 %s", st.Mode().Perm(), p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, s.fileErr(name, ErrUnreadable, "cannot read: %v", err)
	}
	return s.open(name, b)
}

// open decodes the contents b of the file of secret name.
func (s *Store) open(name string, b []byte) ([]byte, error) {
	if len(b) < magicLen {
		return nil, s.fileErr(name, ErrDamaged, "truncated: %d bytes, shorter than the %d-byte header", len(b), magicLen)
	}
	switch string(b[:magicLen]) {
	case magicPlain:
		if s.key != nil {
			return nil, s.fileErr(name, ErrSealed, "stored unencrypted but an operator key is configured")
		}
		return b[magicLen:], nil
	case magicPlainSum:
		if s.key != nil {
			return nil, s.fileErr(name, ErrSealed, "stored unencrypted but an operator key is configured")
		}
		if len(b) < magicLen+sha256.Size {
			return nil, s.fileErr(name, ErrDamaged, "truncated: %d bytes, shorter than header and checksum (%d)", len(b), magicLen+sha256.Size)
		}
		secret := b[magicLen+sha256.Size:]
		if subtle.ConstantTimeCompare(plainSum(name, secret), b[magicLen:magicLen+sha256.Size]) != 1 {
			return nil, s.fileErr(name, ErrDamaged, "checksum mismatch: the file is damaged or truncated (%d bytes), or was copied from another secret's file", len(b))
		}
		return secret, nil
	case magicSealed:
		if s.key == nil {
			return nil, s.fileErr(name, ErrSealed, "encrypted, and no operator key is configured")
		}
		aead, err := chacha20poly1305.NewX(s.key)
		if err != nil {
			return nil, err
		}
		rest := b[magicLen:]
		if least := aead.NonceSize() + aead.Overhead(); len(rest) < least {
			return nil, s.fileErr(name, ErrDamaged, "truncated: %d bytes, a sealed secret has at least %d", len(b), magicLen+least)
		}
		pt, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(name))
		if err != nil {
			return nil, s.fileErr(name, ErrSealed, "the sealed secret (%d bytes) does not authenticate: the file is damaged or truncated, was copied from another secret's file, or the operator key is not the one it was sealed with", len(b))
		}
		return pt, nil
	}
	// The header's bytes are not quoted: a file without one may hold a
	// share written raw, and errors reach logs and the coordinator.
	return nil, s.fileErr(name, ErrDamaged, "not a fedstat secret file (unknown header, %d bytes)", len(b))
}

// Check opens each named secret as Get does (present, private, readable,
// intact and authentic) without returning it, and returns one *FileError
// for each that fails, in the order given; none when all open.
func (s *Store) Check(names ...string) []*FileError {
	var out []*FileError
	for _, name := range names {
		secret, err := s.Get(name)
		clear(secret)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				fe = s.fileErr(name, ErrUnreadable, "%v", err)
			}
			out = append(out, fe)
		}
	}
	return out
}

// EpochNames returns the names of the secrets stored for key epoch n: its
// share (epoch-N) and whatever else was stored under epoch-N-... (the
// threshold share), sorted.
func (s *Store) EpochNames(n uint64) ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	base := "epoch-" + strconv.FormatUint(n, 10)
	var names []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".secret")
		if ok && (name == base || strings.HasPrefix(name, base+"-")) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// CheckEpoch checks every secret file of key epoch n (see EpochNames) and
// that the epoch's share, epoch-N, is among them; required names further
// secrets that must be present (the threshold share, epoch-N-threshold,
// when the epoch's threshold is below its member count). It returns one
// *FileError per file that is missing or does not open.
func (s *Store) CheckEpoch(n uint64, required ...string) []*FileError {
	names, err := s.EpochNames(n)
	if err != nil {
		return []*FileError{{Name: "", Path: s.dir, Kind: ErrUnreadable, Problem: err.Error()}}
	}
	want := append([]string{"epoch-" + strconv.FormatUint(n, 10)}, required...)
	for _, w := range want {
		if !slices.Contains(names, w) {
			names = append(names, w)
		}
	}
	return s.Check(names...)
}

// LoadKeyFile reads an operator key file: 32 raw bytes or 64 hex digits. The
// file must not be readable by group or others.
func LoadKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; run chmod 600 %s", ErrInsecure, path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if len(b) == 32 {
		return b, nil
	}
	h := strings.TrimSpace(string(b))
	k, err := hex.DecodeString(h)
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%w: %s", ErrBadKey, path)
	}
	return k, nil
}
