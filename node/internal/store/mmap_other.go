//go:build !unix

package store

import (
	"fmt"
	"os"
)

// mapFile reads the file at path, which must be size bytes long (no
// memory mapping on this system: the column lives on the heap).
func mapFile(path string, size int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errColumns, err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", errColumns, path, len(b), size)
	}
	return b, nil
}

func unmapFile([]byte) {}
