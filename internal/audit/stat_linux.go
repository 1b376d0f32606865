//go:build linux

package audit

import (
	"os"
	"syscall"
)

// changeStamp returns what changes whenever anyone writes to the file or
// changes its metadata (the inode change time, ctime), and the file's
// link count (0 once it has been deleted or renamed over).
//
// Kernels since 6.13 give ctime a fine-grained value when it was read since
// the last change (multigrain timestamps), so a write right after one of
// ours still moves it; on older kernels two changes within one clock tick
// can share a ctime.
func changeStamp(fi os.FileInfo) (stamp [2]int64, links uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]int64{fi.ModTime().UnixNano(), 0}, 1
	}
	return [2]int64{st.Ctim.Sec, st.Ctim.Nsec}, uint64(st.Nlink)
}
