package admin

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Errors about the data directory an admin command is given.
var (
	// ErrDataDirMissing: the data directory does not exist. Nothing was
	// created (only an import makes a new one).
	ErrDataDirMissing = errors.New("admin: data directory does not exist")
	// ErrNotDataDir: the path exists but is not a fedstat data directory
	// (a file, an empty directory, someone else's files), or lacks what
	// the command needs (a store).
	ErrNotDataDir = errors.New("admin: not a fedstat data directory")
)

// DirNeed says what an admin command needs of a data directory
// (CheckDataDir).
type DirNeed int

const (
	// NeedNode: a node's data directory, with or without its store (`node
	// check`, which then says what is missing and how to repair it).
	NeedNode DirNeed = iota + 1
	// NeedStore: a node's data directory with its store, DIR/kv (status,
	// query, backup, reset-audit). Opening a missing store would make an
	// empty one and answer zeros.
	NeedStore
	// NeedDirectory: an existing directory that is empty or a node's data
	// directory (`node restore`, which fills an empty one).
	NeedDirectory
)

// nodeFiles are the files and directories a node keeps in its data
// directory: any of them makes a directory a node's.
var nodeFiles = []string{"kv", "audit.log", "ledger.hwm", "keys"}

// CheckDataDir checks, without creating or changing anything, that dir is
// what a command needs (need). The errors wrap ErrDataDirMissing or
// ErrNotDataDir and say which directory, what was found and what was
// expected; they are meant for the node admin as they are.
func CheckDataDir(dir string, need DirNeed) error {
	if dir == "" {
		return ErrNoDataDir
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		hint := fmt.Sprintf("a new node's directory is made by `fedstat node import --data-dir %s FILE...`", dir)
		if need == NeedDirectory {
			hint = fmt.Sprintf("to restore onto a new machine, make it first: mkdir -m 700 %s", dir)
		}
		return dirErr(ErrDataDirMissing, "data directory %s does not exist (nothing was created; check the path; %s)", dir, hint)
	case err != nil:
		return fmt.Errorf("admin: data directory %s: %w", dir, err)
	case !st.IsDir():
		return dirErr(ErrNotDataDir, "data directory %s is a file, not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("admin: data directory %s: %w", dir, err)
	}
	have := map[string]bool{}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		have[e.Name()] = true
		names = append(names, e.Name())
	}
	node := false
	for _, f := range nodeFiles {
		node = node || have[f]
	}
	expected := "expected a node's data directory: kv/, the store that `fedstat node import` makes, and once the daemon has run audit.log, ledger.hwm and keys/"
	switch {
	case len(ents) == 0 && need == NeedDirectory:
		return nil
	case len(ents) == 0:
		return dirErr(ErrNotDataDir, "%s is empty: not a fedstat data directory; %s", dir, expected)
	case !node:
		sort.Strings(names)
		return dirErr(ErrNotDataDir, "%s is not a fedstat data directory: it holds %s but none of kv/, audit.log, ledger.hwm, keys/; %s", dir, listSome(names, 5), expected)
	}
	if need != NeedStore {
		return nil
	}
	kvDir := KVDir(dir)
	if !have["kv"] {
		return dirErr(ErrNotDataDir, "%s has no store (%s is missing) although it is a node's data directory: opening it would make an empty store; run `fedstat node check --data-dir %s` for what to do",
			dir, kvDir, dir)
	}
	if st, err := os.Stat(kvDir); err != nil || !st.IsDir() {
		return dirErr(ErrNotDataDir, "the store %s is not a directory", kvDir)
	}
	return nil
}

// listSome writes up to n names, then how many more.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// DataDirError is CheckDataDir's refusal: its text is for the node admin
// as it is; errors.Is matches its kind (ErrDataDirMissing or
// ErrNotDataDir).
type DataDirError struct {
	Kind error
	Text string
}

func (e *DataDirError) Error() string { return e.Text }
func (e *DataDirError) Unwrap() error { return e.Kind }

func dirErr(kind error, format string, args ...any) error {
	return &DataDirError{Kind: kind, Text: fmt.Sprintf(format, args...)}
}
