package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// A damaged or truncated share file was refused without naming the file
// (a sealed one as "cannot open sealed secret (wrong or missing operator
// key?): epoch-1"), and damage to a plain one was not seen at all. Now
// every problem is a *FileError naming the file and what is wrong.
func TestDamagedShareNamesFile(t *testing.T) {
	for _, key := range [][]byte{nil, bytes.Repeat([]byte{9}, 32)} {
		for _, tc := range []struct {
			name   string
			damage func([]byte) []byte
			kinds  []error // acceptable kinds
		}{
			{"byte flipped", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }, []error{ErrDamaged, ErrSealed}},
			{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, []error{ErrDamaged, ErrSealed}},
			{"cut inside the header", func(b []byte) []byte { return b[:3] }, []error{ErrDamaged}},
			{"empty", func([]byte) []byte { return nil }, []error{ErrDamaged}},
			{"zeroed", func(b []byte) []byte { return make([]byte, len(b)) }, []error{ErrDamaged}},
		} {
			dir := filepath.Join(t.TempDir(), "keys")
			s, err := Open(dir, key)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Put("epoch-1", bytes.Repeat([]byte("share"), 100)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "epoch-1.secret")
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get("epoch-1")
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), path) {
				t.Fatalf("sealed=%v %s: Get = %d bytes, %v; want a FileError naming %s", key != nil, tc.name, len(got), err, path)
			}
			if !slices.ContainsFunc(tc.kinds, func(k error) bool { return errors.Is(err, k) }) {
				t.Fatalf("sealed=%v %s: kind %v, want one of %v", key != nil, tc.name, fe.Kind, tc.kinds)
			}
			t.Logf("sealed=%v %s: %v", key != nil, tc.name, err)
		}
	}
}

// A share file copied under another secret's name is refused.
func TestShareBoundToItsName(t *testing.T) {
	for _, key := range [][]byte{nil, bytes.Repeat([]byte{9}, 32)} {
		dir := filepath.Join(t.TempDir(), "keys")
		s, _ := Open(dir, key)
		s.Put("epoch-1", []byte("one"))
		s.Put("epoch-2", []byte("two"))
		b, _ := os.ReadFile(filepath.Join(dir, "epoch-1.secret"))
		os.WriteFile(filepath.Join(dir, "epoch-2.secret"), b, 0o600)
		if _, err := s.Get("epoch-2"); err == nil {
			t.Fatalf("sealed=%v: epoch-1's file opened as epoch-2", key != nil)
		}
	}
}

// Files written before the checksum (FSK1P) still open.
func TestLegacyPlainFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, _ := Open(dir, nil)
	os.WriteFile(filepath.Join(dir, "epoch-1.secret"), []byte("FSK1Pold-share"), 0o600)
	if got, err := s.Get("epoch-1"); err != nil || string(got) != "old-share" {
		t.Fatalf("legacy file: %q, %v", got, err)
	}
}

// CheckEpoch names every secret file of an epoch that is missing or does
// not open, one typed error per file, and returns no secret.
func TestCheckEpoch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, _ := Open(dir, bytes.Repeat([]byte{3}, 32))
	for _, n := range []string{"epoch-3", "epoch-3-threshold", "epoch-4", "epoch-30"} {
		if err := s.Put(n, []byte("secret "+n)); err != nil {
			t.Fatal(err)
		}
	}
	if errs := s.CheckEpoch(3, "epoch-3-threshold"); len(errs) != 0 {
		t.Fatalf("healthy epoch: %v", errs)
	}
	if names, _ := s.EpochNames(3); !slices.Equal(names, []string{"epoch-3", "epoch-3-threshold"}) {
		t.Fatalf("EpochNames(3) = %v", names)
	}
	// Damage the threshold share, lose the share of epoch 4.
	p := filepath.Join(dir, "epoch-3-threshold.secret")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, b[:len(b)-1], 0o600)
	os.Remove(filepath.Join(dir, "epoch-4.secret"))
	errs := s.CheckEpoch(3)
	if len(errs) != 1 || errs[0].Name != "epoch-3-threshold" || errs[0].Path != p || !errors.Is(errs[0], ErrSealed) {
		t.Fatalf("CheckEpoch(3) = %v", errs)
	}
	errs = s.CheckEpoch(4, "epoch-4-threshold")
	if len(errs) != 2 || !errors.Is(errs[0], ErrNotFound) || !errors.Is(errs[1], ErrNotFound) ||
		!strings.Contains(errs[0].Error(), "epoch-4.secret") || !strings.Contains(errs[1].Error(), "epoch-4-threshold.secret") {
		t.Fatalf("CheckEpoch(4) = %v", errs)
	}
	// A file readable by others is named too.
	os.Chmod(filepath.Join(dir, "epoch-3.secret"), 0o644)
	if errs := s.Check("epoch-3"); len(errs) != 1 || !errors.Is(errs[0], ErrInsecure) {
		t.Fatalf("Check of a 0644 file: %v", errs)
	}
}

// A file without a fedstat header (a share written raw) is damaged, and the
// error, which reaches logs and the coordinator, quotes none of its bytes.
func TestUnknownHeaderQuotesNoBytes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("SECRETSHAREBYTES")
	if err := os.WriteFile(filepath.Join(dir, "epoch-1.secret"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get("epoch-1")
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Get = %v, want ErrDamaged", err)
	}
	if strings.Contains(err.Error(), string(raw[:magicLen])) {
		t.Fatalf("error quotes the file's bytes: %v", err)
	}
}

// TestDelete: a deleted secret is gone (ErrNotFound, its file removed);
// deleting one that is not there is no error, and the others stay.
func TestDelete(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"dealing-3", "epoch-3"} {
		if err := s.Put(n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete("dealing-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("dealing-3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete("dealing-3"); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	if got, err := s.Get("epoch-3"); err != nil || string(got) != "epoch-3" {
		t.Fatalf("another secret after Delete: %q, %v", got, err)
	}
}
