//go:build linux

package kv

import (
	"errors"
	"os"
	"syscall"
)

const fallocKeepSize = 0x1 // FALLOC_FL_KEEP_SIZE

// freeBytes returns the space available to an unprivileged process on the
// file system holding path.
func freeBytes(path string) (uint64, bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, false, err
	}
	return st.Bavail * uint64(st.Bsize), true, nil
}

// freeBytesOf is freeBytes for an open file or directory (cheaper: no path
// lookup).
func freeBytesOf(f *os.File) (uint64, bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, false, err
	}
	return st.Bavail * uint64(st.Bsize), true, nil
}

// sizeAndLinks returns an open file's size and link count (0 once the file
// was deleted).
func sizeAndLinks(f *os.File) (int64, uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	return st.Size, uint64(st.Nlink), nil
}

// allocate makes sure the blocks of f in [off, off+n) exist on disk, so
// that writes through a memory mapping of them cannot fault for lack of
// space. keepSize allocates past the end of the file without changing its
// size. It reports errNoPrealloc when the file system cannot preallocate.
func allocate(f *os.File, off, n int64, keepSize bool) error {
	if n <= 0 {
		return nil
	}
	mode := uint32(0)
	if keepSize {
		mode = fallocKeepSize
	}
	for {
		err := syscall.Fallocate(int(f.Fd()), mode, off, n)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			return errNoPrealloc
		}
		return err
	}
}

func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// allocated returns the bytes of disk a file occupies.
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// datasync flushes a file's data (not its timestamps) to disk.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
