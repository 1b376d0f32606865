package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestPlainAndSealed(t *testing.T) {
	for _, key := range [][]byte{nil, bytes.Repeat([]byte{9}, 32)} {
		dir := filepath.Join(t.TempDir(), "keys")
		s, err := Open(dir, key)
		if err != nil {
			t.Fatal(err)
		}
		secret := []byte("share-bytes")
		if err := s.Put("epoch-1", secret); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get("epoch-1")
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Get = %q, %v", got, err)
		}
		raw, _ := os.ReadFile(filepath.Join(dir, "epoch-1.secret"))
		if key != nil && bytes.Contains(raw, secret) {
			t.Fatal("sealed file holds the secret in the clear")
		}
		st, _ := os.Stat(filepath.Join(dir, "epoch-1.secret"))
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode().Perm())
		}
	}
}

func TestWrongKeyAndMissingKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, _ := Open(dir, bytes.Repeat([]byte{1}, 32))
	if err := s.Put("x", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(dir, bytes.Repeat([]byte{2}, 32))
	if _, err := s2.Get("x"); !errors.Is(err, ErrSealed) {
		t.Fatalf("wrong key: %v", err)
	}
	s3, _ := Open(dir, nil)
	if _, err := s3.Get("x"); !errors.Is(err, ErrSealed) {
		t.Fatalf("no key: %v", err)
	}
	if _, err := s3.Get("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestReadableShareStopsOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("epoch-1", []byte("s")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "epoch-1.secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.TempDir(), nil); !errors.Is(err, ErrInsecure) {
		t.Fatalf("Open of a world-readable directory: %v, want ErrInsecure", err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrInsecure) {
		t.Fatalf("Open with a world-readable share: %v, want ErrInsecure", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	os.WriteFile(p, []byte("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"), 0o600)
	k, err := LoadKeyFile(p)
	if err != nil || len(k) != 32 {
		t.Fatalf("hex key: %v", err)
	}
	os.Chmod(p, 0o644)
	if _, err := LoadKeyFile(p); !errors.Is(err, ErrInsecure) {
		t.Fatalf("readable key file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "short"), []byte("abc"), 0o600)
	if _, err := LoadKeyFile(filepath.Join(dir, "short")); !errors.Is(err, ErrBadKey) {
		t.Fatalf("short key: %v", err)
	}
}
