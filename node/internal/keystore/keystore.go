// Package keystore keeps a node's secret key material (its share of the
// collective secret key for each key epoch) sealed on disk: files of mode
// 0600 in a 0700 directory, checked at every load, and encrypted with
// XChaCha20-Poly1305 under the operator's key when one is configured.
//
// Secret shares never leave the node: nothing in this package sends, logs or
// formats them.
package keystore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// Errors.
var (
	ErrInsecure = errors.New("keystore: secret file readable by group or others")
	ErrNotFound = errors.New("keystore: no such secret")
	ErrSealed   = errors.New("keystore: cannot open sealed secret (wrong or missing operator key?)")
	ErrBadKey   = errors.New("keystore: operator key file must hold 32 bytes, raw or as 64 hex digits")
)

const magicPlain, magicSealed = "FSK1P", "FSK1S"

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
		out = append([]byte(magicPlain), secret...)
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

// Get reads the secret stored under name, checking the file's mode first.
func (s *Store) Get(name string) ([]byte, error) {
	p := s.path(name)
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; run chmod 600 %s", ErrInsecure, p, st.Mode().Perm(), p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	switch {
	case strings.HasPrefix(string(b[:min(len(b), 5)]), magicPlain):
		if s.key != nil {
			return nil, fmt.Errorf("%w: %s is stored unencrypted but an operator key is configured", ErrSealed, name)
		}
		return b[len(magicPlain):], nil
	case strings.HasPrefix(string(b[:min(len(b), 5)]), magicSealed):
		if s.key == nil {
			return nil, fmt.Errorf("%w: %s is encrypted and no operator key is configured", ErrSealed, name)
		}
		aead, err := chacha20poly1305.NewX(s.key)
		if err != nil {
			return nil, err
		}
		rest := b[len(magicSealed):]
		if len(rest) < aead.NonceSize() {
			return nil, fmt.Errorf("%w: %s is truncated", ErrSealed, name)
		}
		pt, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(name))
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrSealed, name)
		}
		return pt, nil
	}
	return nil, fmt.Errorf("%w: %s is not a fedstat secret file", ErrSealed, name)
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
