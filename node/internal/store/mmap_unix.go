//go:build unix

package store

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the file at path, which must be size bytes long, read-only
// into memory. Its pages are the page cache's: the kernel reads them on
// first use and may drop them again under memory pressure, so a mapped
// column costs no Go heap and counts against RSS only while resident.
func mapFile(path string, size int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errColumns, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errColumns, err)
	}
	if st.Size() != int64(size) {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", errColumns, path, st.Size(), size)
	}
	if size == 0 {
		return nil, nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("store: map %s: %w", path, err)
	}
	return b, nil
}

func unmapFile(b []byte) { syscall.Munmap(b) }
