//go:build !linux

package kv

import (
	"errors"
	"os"
	"syscall"
)

// freeBytes is not implemented here: the free-space checks are skipped.
func freeBytes(string) (uint64, bool, error) { return 0, false, nil }

func freeBytesOf(*os.File) (uint64, bool, error) { return 0, false, nil }

func sizeAndLinks(f *os.File) (int64, uint64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return st.Size(), 1, nil
}

// allocate cannot preallocate here.
func allocate(*os.File, int64, int64, bool) error { return errNoPrealloc }

func lockFile(*os.File) error { return nil }

func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }

func allocated(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func datasync(f *os.File) error { return f.Sync() }
