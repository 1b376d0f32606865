//go:build !linux

package audit

import "os"

// changeStamp returns the modification time and 1 link: without ctime and
// link counts only writes that move the modification time are noticed.
func changeStamp(fi os.FileInfo) (stamp [2]int64, links uint64) {
	return [2]int64{fi.ModTime().UnixNano(), 0}, 1
}
