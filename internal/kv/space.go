package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Disk space.
//
// Badger writes its write-ahead log (the memtable files NNNNN.mem) and its
// value log (NNNNNN.vlog) through shared memory mappings of sparse files:
// it sizes a new file with ftruncate (2 x MemTableSize, 2 x
// ValueLogFileSize) and copies entries into the mapping. When the file
// system has no block left for a page that is written for the first time,
// the kernel cannot report an error to a write that is a plain memory store:
// it sends SIGBUS, and the Go runtime dies with "unexpected fault address"
// (a fault in a goroutine Badger started, so nothing can recover it).
// Table files (.sst) are made the same way when a memtable is flushed or
// tables are compacted, in Badger's background goroutines.
//
// kv therefore
//
//   - keeps the blocks of the active memtable file allocated (fallocate)
//     ahead of what Badger can have written into it, counting the bytes of
//     every write it hands to Badger (an upper bound of Badger's encoding);
//   - creates the next memtable file itself, empty, with blocks allocated
//     past its end (FALLOC_FL_KEEP_SIZE): Badger opens the next memtable
//     without O_EXCL and sizes it with ftruncate, which keeps those blocks,
//     so the first writes after a rotation land on allocated blocks too;
//   - does the same for the value log file (values of ValueThreshold bytes
//     or more), which Badger creates itself (O_EXCL), so there only the
//     writes in flight at the moment of a rotation are not covered;
//   - refuses a write, and Open, when the file system has less than
//     MinFreeBytes (plus the write) available: that headroom is for the
//     table files of Badger's flushes and compactions, which kv cannot
//     allocate in advance.
//
// What remains uncovered: another process filling the file system between
// a check and Badger's background flush or compaction, and the writes in
// flight at a value-log rotation. A file system that cannot preallocate
// (fallocate unsupported) keeps only the free-space checks.
var errNoPrealloc = errors.New("kv: file system cannot preallocate")

const (
	// logHeader is the header of Badger's log files (key id and IV).
	logHeader = 20
	// entryOverhead bounds what Badger adds to a key and value in a log
	// entry: a header of at most 22 bytes, the 8-byte version suffix of the
	// key and a 4-byte checksum, plus the 22 zero bytes it writes past the
	// entry.
	entryOverhead = 22 + 8 + 4 + 22
	// commitOverhead bounds the end-of-transaction entry Badger appends to
	// each commit ("!badger!txn" with the commit version).
	commitOverhead = entryOverhead + 11 + 20
	// pageSize is the granularity of the mapping.
	pageSize = 4096
)

// space tracks the allocation of Badger's memory-mapped logs. All methods
// are safe for concurrent use.
type space struct {
	dir      string
	minFree  uint64
	chunk    int64 // allocation step
	memSize  int64 // size Badger gives a memtable file
	log      *slog.Logger
	prealloc bool

	mu sync.Mutex
	// WAL bytes handed to Badger (reserved) and whose write returned
	// (completed), since Open.
	reserved, completed uint64
	mem                 logFile
	// next is the memtable file kv made ready for Badger's next rotation
	// (nextF open while it is waiting; nil if it could not be made).
	nextFid   int
	nextAlloc int64
	nextF     *os.File
	dirF      *os.File // the directory, for fstatfs
	// completed at the last moment the next file was seen unused: every
	// write that finished before then went to older files.
	quiet uint64

	vreserved, vcompleted uint64
	vlog                  logFile
	vquiet                uint64
}

// logFile is the log file Badger currently appends to.
type logFile struct {
	fid   int
	size  int64  // file size (Badger's mapping length)
	base  uint64 // bytes completed before this file became active
	alloc int64  // allocated prefix
}

func memName(fid int) string  { return fmt.Sprintf("%05d.mem", fid) }
func vlogName(fid int) string { return fmt.Sprintf("%06d.vlog", fid) }

// fids returns the numbers of the files in dir with the extension.
func fids(dir, ext string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ext); ok && !e.IsDir() {
			if id, err := strconv.Atoi(n); err == nil {
				out = append(out, id)
			}
		}
	}
	sort.Ints(out)
	return out, nil
}

// start is called right after Badger opened the store: Badger has just
// created the memtable file and value log file it appends to (the highest
// numbered ones). It allocates their first chunk, the DISCARD file, and
// makes the next memtable file ready.
func (s *space) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mems, err := fids(s.dir, ".mem")
	if err != nil || len(mems) == 0 {
		return fmt.Errorf("kv: no memtable file after open in %s: %v", s.dir, err)
	}
	s.mem = logFile{fid: mems[len(mems)-1], size: s.memSize}
	s.nextFid = s.mem.fid + 1
	if d, err := os.Open(s.dir); err == nil {
		s.dirF = d
	}
	if vl, err := fids(s.dir, ".vlog"); err == nil && len(vl) > 0 {
		s.vlog = logFile{fid: vl[len(vl)-1], size: fileSize(filepath.Join(s.dir, vlogName(vl[len(vl)-1])))}
	}
	if err := s.allocFile("DISCARD", 0, fileSize(filepath.Join(s.dir, "DISCARD")), false); err != nil {
		return err
	}
	if err := s.growMem(0); err != nil {
		return err
	}
	return s.readyNext(0)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// allocFile allocates [off, end) of a file in dir. keepSize allocates past
// the end of the file without growing it.
func (s *space) allocFile(name string, off, end int64, keepSize bool) error {
	if !s.prealloc || end <= off {
		return nil
	}
	p := filepath.Join(s.dir, name)
	flags := os.O_RDWR
	if keepSize {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("kv: %w", err)
	}
	defer f.Close()
	return s.allocate(f, off, end, keepSize)
}

// allocate allocates [off, end) of an open file.
func (s *space) allocate(f *os.File, off, end int64, keepSize bool) error {
	if !s.prealloc || end <= off {
		return nil
	}
	err := allocate(f, off, end-off, keepSize)
	p := f.Name()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNoPrealloc):
		s.prealloc = false
		s.log.Warn("kv: the file system cannot preallocate; only free-space checks protect the store from a full disk", "dir", s.dir)
		return nil
	case isNoSpace(err):
		free, _, _ := freeBytes(s.dir)
		return &NoSpaceError{Path: p, Op: "allocate", Free: free, Need: uint64(end - off), Err: err}
	}
	return fmt.Errorf("kv: allocate %s: %w", p, err)
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// growMem allocates the active memtable file up to what Badger may have
// written into it once `pending` more bytes are handed over (rounded up to
// a chunk, so that allocations are few).
func (s *space) growMem(pending uint64) error {
	bound := int64(s.reserved+pending-s.mem.base) + logHeader + pageSize
	if bound <= s.mem.alloc {
		return nil
	}
	end := min(s.mem.size, roundUp(bound, s.chunk))
	if err := s.allocFile(memName(s.mem.fid), s.mem.alloc, end, false); err != nil {
		return err
	}
	s.mem.alloc = end
	return nil
}

// readyNext makes sure the next memtable file exists and has blocks for
// everything in flight (which may all land in it if Badger rotates now),
// rounded up to a chunk.
func (s *space) readyNext(pending uint64) error {
	want := min(s.memSize, roundUp(int64(s.reserved+pending-s.completed)+logHeader+pageSize, s.chunk))
	if want <= s.nextAlloc {
		return nil
	}
	if s.nextF == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, memName(s.nextFid)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("kv: %w", err)
		}
		s.nextF = f
	}
	if !s.prealloc {
		return nil
	}
	if err := s.allocate(s.nextF, s.nextAlloc, want, true); err != nil {
		return err
	}
	s.nextAlloc = want
	return nil
}

// observe notices rotations: Badger moving to the next memtable file (it
// has grown from the empty file kv made), or to a new value log file.
func (s *space) observe() {
	var size int64
	var err error
	if s.nextF != nil {
		var links uint64
		if size, links, err = sizeAndLinks(s.nextF); err == nil && links == 0 {
			// Deleted by hand: look at the name again.
			s.nextF.Close()
			s.nextF, s.nextAlloc = nil, 0
		}
	}
	if s.nextF == nil {
		var st os.FileInfo
		if st, err = os.Stat(filepath.Join(s.dir, memName(s.nextFid))); err == nil {
			size = st.Size()
		}
	}
	switch {
	case err == nil && size == 0, err != nil:
		// Not rotated: Badger would have created and sized the file. (If
		// kv's file vanished or could not be made, readyNext makes it.)
		s.quiet = s.completed
	default:
		// Badger rotated into the next file. Whatever was in flight or
		// finished after the last quiet moment may be in it.
		fid, alloc := s.nextFid, s.nextAlloc
		for {
			if _, err := os.Stat(filepath.Join(s.dir, memName(fid+1))); err != nil {
				break
			}
			fid, alloc = fid+1, 0 // rotated more than once
		}
		s.mem = logFile{fid: fid, size: s.memSize, base: s.quiet, alloc: alloc}
		if s.nextF != nil {
			s.nextF.Close() // Badger has its own descriptor
		}
		s.nextFid, s.nextAlloc, s.nextF = fid+1, 0, nil
		s.quiet = s.completed
	}
	if s.vreserved > 0 {
		fid := s.vlog.fid
		for {
			if _, err := os.Stat(filepath.Join(s.dir, vlogName(fid+1))); err != nil {
				break
			}
			fid++
		}
		if fid != s.vlog.fid {
			s.vlog = logFile{fid: fid, size: fileSize(filepath.Join(s.dir, vlogName(fid))), base: s.vquiet}
		}
		s.vquiet = s.vcompleted
	}
}

// reserve is called before kv hands a write to Badger: wal bytes for the
// memtable log, vlog bytes for the value log. It checks free space and
// allocates what the write may touch. Every successful reserve must be
// followed by done with the same numbers once Badger returns.
func (s *space) reserve(wal, vlog uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe()
	if free, ok, err := s.free(); err == nil && ok {
		if need := s.minFree + wal + vlog; free < need {
			return &NoSpaceError{Path: s.dir, Op: "write", Free: free, Need: need}
		}
	}
	if err := s.growMem(wal); err != nil {
		return err
	}
	if err := s.readyNext(wal); err != nil {
		return err
	}
	if vlog > 0 || s.vreserved > s.vcompleted {
		bound := int64(s.vreserved+vlog-s.vlog.base) + logHeader + pageSize
		if bound > s.vlog.alloc && s.vlog.size > 0 {
			end := min(s.vlog.size, roundUp(bound, s.chunk))
			if err := s.allocFile(vlogName(s.vlog.fid), s.vlog.alloc, end, false); err != nil {
				return err
			}
			s.vlog.alloc = end
		}
	}
	s.reserved += wal
	s.vreserved += vlog
	return nil
}

// free returns the space available on the store's file system.
func (s *space) free() (uint64, bool, error) {
	if s.dirF != nil {
		return freeBytesOf(s.dirF)
	}
	return freeBytes(s.dir)
}

func (s *space) done(wal, vlog uint64) {
	s.mu.Lock()
	s.completed += wal
	s.vcompleted += vlog
	s.mu.Unlock()
}

// check refuses an operation that writes no log but may make Badger write
// tables (DropPrefix flushes the memtable) when space is short.
func (s *space) check(op string, extra uint64) error {
	free, ok, err := s.free()
	if err != nil || !ok {
		return nil
	}
	if need := s.minFree + extra; free < need {
		return &NoSpaceError{Path: s.dir, Op: op, Free: free, Need: need}
	}
	return nil
}

// closing removes the next memtable file kv made (still empty: Badger does
// not rotate while closing), which frees its blocks for the table that
// Close flushes, and checks that the flush fits. It returns a *NoSpaceError
// when it does not: the caller must then not let Badger flush.
func (s *space) closing() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe()
	if s.nextF != nil {
		if size, _, err := sizeAndLinks(s.nextF); err == nil && size == 0 {
			os.Remove(filepath.Join(s.dir, memName(s.nextFid)))
		}
		s.nextF.Close()
		s.nextF = nil
	}
	if s.dirF != nil {
		defer func() { s.dirF.Close(); s.dirF = nil }()
	}
	// The flushed table is at most about the memtable's log bytes, plus
	// index and filter: twice that and a MiB is a safe bound.
	need := 2*(s.reserved-s.mem.base) + 1<<20
	if free, ok, err := s.free(); err == nil && ok && free < need {
		return &NoSpaceError{Path: s.dir, Op: "close (flush of the memtable)", Free: free, Need: need}
	}
	return nil
}

// refresh notices a rotation that happened without a write (DropPrefix
// flushes the memtable) and makes the next memtable file ready again.
func (s *space) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe()
	if err := s.growMem(0); err != nil {
		s.log.Warn("kv: cannot allocate the write-ahead log", "err", err)
	}
	if err := s.readyNext(0); err != nil {
		s.log.Warn("kv: cannot make the next write-ahead log file ready", "err", err)
	}
}

// release closes the files space holds open (Open failed after Badger
// opened). The next memtable file stays; the next Open removes it.
func (s *space) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nextF != nil {
		s.nextF.Close()
		s.nextF = nil
	}
	if s.dirF != nil {
		s.dirF.Close()
		s.dirF = nil
	}
}
