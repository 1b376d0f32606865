// Package admin is the node operator's entry point to a node's local data:
// opening the store of a data directory, importing FHIR R4 and CSV files,
// and summarising what is stored. The fedstat CLI, the node daemon and the
// demo call it; it is the only public door to node/internal/store and the
// importers.
//
// Everything here is for the node's own admin on the node's own machine:
// summaries contain exact counts and error messages name patient ids.
// Nothing in this package is reachable over the network.
package admin

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/node/internal/store"
)

// Errors.
var (
	ErrKeyFile     = errors.New("admin: bad operator key file")
	ErrInsecureKey = errors.New("admin: operator key file is accessible by group or others (chmod 600 it)")
	ErrBadInput    = errors.New("admin: bad input records")
	ErrNoDataDir   = errors.New("admin: data directory is required")
)

// KVDir returns the directory of the node's kv database inside dataDir.
func KVDir(dataDir string) string { return filepath.Join(dataDir, "kv") }

// ReadKeyFile reads the operator key file: exactly 32 bytes, either raw or
// written as 64 hexadecimal digits (surrounding white space ignored). The
// file must not be accessible by group or others (mode 0600 or stricter),
// else ErrInsecureKey. Make one with:
//
//	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > node.key && chmod 600 node.key
//
// The same key file serves the keystore (secret shares) and, through a
// derived key, encryption at rest of the data store.
func ReadKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrInsecureKey, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	if len(b) == 32 {
		return b, nil
	}
	t := strings.TrimSpace(string(b))
	if len(t) == 64 {
		if k, err := hex.DecodeString(t); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: %s must hold 32 bytes, raw or as 64 hex digits", ErrKeyFile, path)
}

// StoreKey derives the data store's AES-256 key from the operator key
// (HKDF-SHA256, info "fedstat data store v1"), so the raw operator key is
// used for one purpose only.
func StoreKey(operatorKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, operatorKey, nil, "fedstat data store v1", 32)
}

// KeystoreKey derives the key that seals the node's secret shares at rest
// (keys/*.secret) from the operator key (HKDF-SHA256, info "fedstat
// keystore v1"), as the node daemon does.
func KeystoreKey(operatorKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, operatorKey, nil, "fedstat keystore v1", 32)
}

// Keys reads the operator key file (none: nil, nil) and returns the data
// store's key and the keystore's key derived from it.
func Keys(keyFile string) (storeKey, keystoreKey []byte, err error) {
	if keyFile == "" {
		return nil, nil, nil
	}
	op, err := ReadKeyFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	if storeKey, err = StoreKey(op); err != nil {
		return nil, nil, fmt.Errorf("admin: derive store key: %w", err)
	}
	if keystoreKey, err = KeystoreKey(op); err != nil {
		return nil, nil, fmt.Errorf("admin: derive keystore key: %w", err)
	}
	return storeKey, keystoreKey, nil
}

// OpenOptions say which store to open.
type OpenOptions struct {
	// DataDir is the node's data directory; the kv database lives in
	// KVDir(DataDir). Required.
	DataDir string
	// KeyFile, when set, is the operator key file (see ReadKeyFile); the
	// store is then encrypted at rest. A store made with a key must always
	// be opened with it. Defaults to none.
	KeyFile string
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// OpenStore opens (creating if needed) the kv database of a data directory
// and the data store in it, recovering from an interrupted import and
// building the columnar copy. The caller closes the *kv.DB when done, after
// the last use of the store; the daemon shares that DB for its ledger and
// other state under their own key prefixes (the store uses store.Prefix).
// Only one process can have a data directory open.
func OpenStore(ctx context.Context, o OpenOptions) (*store.Store, *kv.DB, error) {
	if o.DataDir == "" {
		return nil, nil, ErrNoDataDir
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var key []byte
	if o.KeyFile != "" {
		op, err := ReadKeyFile(o.KeyFile)
		if err != nil {
			return nil, nil, err
		}
		if key, err = StoreKey(op); err != nil {
			return nil, nil, fmt.Errorf("admin: derive store key: %w", err)
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("admin: %w", err)
	}
	db, err := kv.Open(kv.Options{Dir: KVDir(o.DataDir), EncryptionKey: key, Logger: o.Logger})
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "lock") {
			hint = " (is a node or another import using this data directory?)"
		} else if strings.Contains(strings.ToLower(err.Error()), "encrypt") || strings.Contains(err.Error(), "key") {
			hint = " (was the store created with a different --key-file, or without one?)"
		}
		return nil, nil, fmt.Errorf("admin: open data directory %s: %w%s", o.DataDir, err, hint)
	}
	s, err := store.OpenWith(ctx, db, store.Options{Logger: o.Logger, ColumnDir: ColumnDir(o.DataDir)})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return s, db, nil
}

// ColumnDir returns the directory of the column files of bulk imports
// inside dataDir (store.Options.ColumnDir). A store opened on its kv
// database alone (OpenStoreOn) finds it through the path the first bulk
// import recorded.
func ColumnDir(dataDir string) string { return filepath.Join(dataDir, "columns") }

// OpenStoreOn opens the data store in a kv database already open (the
// daemon opens it through node/check first), recovering from an
// interrupted import and building the columnar copy. It does not close db.
func OpenStoreOn(ctx context.Context, db *kv.DB, log *slog.Logger) (*store.Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return store.Open(ctx, db, log)
}

// OpenTables opens a data directory, returns its columnar copy and closes
// the directory again, for one-shot local use (the admin's exact local
// query). The tables stay valid after the directory is closed. A
// directory that does not exist or holds no store is refused
// (CheckDataDir, NeedStore): nothing is created.
func OpenTables(ctx context.Context, dataDir, keyFile string) (*cdm.Tables, error) {
	if err := CheckDataDir(dataDir, NeedStore); err != nil {
		return nil, err
	}
	s, db, err := OpenStore(ctx, OpenOptions{DataDir: dataDir, KeyFile: keyFile})
	if err != nil {
		return nil, err
	}
	t := s.Tables()
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("admin: close: %w", err)
	}
	return t, nil
}
